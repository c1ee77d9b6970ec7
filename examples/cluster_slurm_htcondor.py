"""Run the pd4ml benchmark on a SLURM or HTCondor cluster through dask-jobqueue.

Copy this script to the login (submit) node of your cluster and adapt the options. It starts a
Dask scheduler in this process, prints the job script each batch job will run and, with
``--run``, submits ``--jobs`` jobs (each starting one single-threaded Dask worker per core) and
runs ``python -m pd4ml.bench --executor dask --scheduler <this scheduler>`` with the benchmark
arguments given after ``--``. Closing the cluster at the end cancels the jobs.

    # look at the job script first (nothing is submitted)
    python cluster_slurm_htcondor.py slurm --queue short --account phys123
    # then run the benchmark on 10 jobs of 8 cores each
    python cluster_slurm_htcondor.py slurm --queue short --account phys123 --cores 8 \\
        --memory 32GB --jobs 10 --data-dir /shared/pd4ml-data --run -- \\
        --all --profile paper --source archive --out /shared/pd4ml-bench
    # HTCondor
    python cluster_slurm_htcondor.py htcondor --cores 4 --memory 16GB --disk 20GB --run -- --all

The workers must see the same output directory (``--out``) and the same data cache
(``--data-dir``, exported as ``PD4ML_DATA_DIR``) on a shared file system. Compute nodes without
internet access cannot download: run ``pd4ml download`` for the datasets on the login node first.
Needs ``pip install 'pd4ml-hep[cluster]'`` in an environment the compute nodes can use (the
workers run this interpreter, ``sys.executable``, unless ``--python`` says otherwise).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

from pd4ml.bench.executors import CLUSTER_KINDS, jobqueue_cluster

DEFAULT_BENCH_ARGUMENTS = ["--all", "--profile", "paper", "--source", "archive"]


def parse_arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The cluster options, and the benchmark arguments after ``--``."""
    argv = list(argv)
    bench = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=CLUSTER_KINDS, help="the batch system")
    parser.add_argument("--cores", type=int, default=4, help="cores per job (one worker each)")
    parser.add_argument("--memory", default="16GB", help="memory per job")
    parser.add_argument("--walltime", default="04:00:00", help="SLURM run-time limit per job")
    parser.add_argument("--queue", help="SLURM partition (#SBATCH -p)")
    parser.add_argument("--account", help="SLURM account (#SBATCH -A)")
    parser.add_argument("--disk", default="20GB", help="HTCondor disk per job")
    parser.add_argument("--python", help="the Python on the compute nodes")
    parser.add_argument("--local-directory", help="node-local scratch for the workers")
    parser.add_argument("--log-directory", help="where the jobs write their output")
    parser.add_argument("--interface", help="network interface of the workers (ib0, eth0)")
    parser.add_argument("--data-dir", help="the shared data cache, exported as PD4ML_DATA_DIR")
    parser.add_argument(
        "--setup", action="append", default=[], help="a shell line each job runs first"
    )
    parser.add_argument("--scheduler-host", help="the address the scheduler listens on")
    parser.add_argument("--jobs", type=int, default=2, help="batch jobs to submit with --run")
    parser.add_argument("--run", action="store_true", help="submit the jobs and run the bench")
    return parser.parse_args(own), bench or DEFAULT_BENCH_ARGUMENTS


def main(argv: Sequence[str] | None = None) -> int:
    options, bench_arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    cluster = jobqueue_cluster(
        options.kind,
        cores=options.cores,
        memory=options.memory,
        walltime=options.walltime,
        queue=options.queue,
        account=options.account,
        disk=options.disk,
        python=options.python,
        local_directory=options.local_directory,
        log_directory=options.log_directory,
        interface=options.interface,
        environment={"PD4ML_DATA_DIR": options.data_dir} if options.data_dir else None,
        setup=options.setup,
        scheduler_options={"host": options.scheduler_host, "dashboard_address": ":0"}
        if options.scheduler_host
        else None,
    )
    with cluster:  # the scheduler started with the cluster; closing it cancels the jobs
        print(cluster.job_script())
        if not options.run:
            print(
                f"# scheduler at {cluster.scheduler_address}; add --run to submit", file=sys.stderr
            )
            return 0
        cluster.scale(jobs=options.jobs)
        command = [
            sys.executable,
            "-m",
            "pd4ml.bench",
            *bench_arguments,
            "--executor",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
            # the driver plans against the same shared cache the workers read
            *(["--data-dir", options.data_dir] if options.data_dir else []),
        ]
        print("# running:", " ".join(command), file=sys.stderr)
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
