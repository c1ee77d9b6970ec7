"""How to cite pd4ml itself (datasets cite themselves through their manifests)."""

from __future__ import annotations

from pd4ml._version import __version__


def package_bibtex() -> str:
    """BibTeX for the pd4ml paper and this software package."""
    return f"""@article{{Benato:2021olt,
  author  = {{Benato, Lisa and Buhmann, Erik and Erdmann, Martin and Fackeldey, Peter and
             Glombitza, Jonas and Hartmann, Nikolai and Kasieczka, Gregor and Korcari, William and
             Kuhr, Thomas and Steinheimer, Jan and St{{\\"o}}cker, Horst and Plehn, Tilman and
             Zhou, Kai}},
  title   = {{Shared Data and Algorithms for Deep Learning in Fundamental Physics}},
  journal = {{Comput. Softw. Big Sci.}},
  volume  = {{6}},
  pages   = {{9}},
  year    = {{2022}},
  doi     = {{10.1007/s41781-022-00082-6}},
  eprint  = {{2107.00656}},
  archivePrefix = {{arXiv}}
}}

@software{{pd4ml_hep,
  title   = {{pd4ml-hep: physics data for machine learning}},
  version = {{{__version__}}},
  url     = {{https://pypi.org/project/pd4ml-hep/}}
}}
"""


def cite() -> str:
    """``pd4ml.cite()``: BibTeX for the package (use ``Dataset.cite()`` for a dataset)."""
    return package_bibtex()
