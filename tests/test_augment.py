"""Physics augmentations: the protocol (random, variants, Compose) and each dataset's declared
symmetries, on every dataset's synthetic prepared split (loopback archive server)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from pd4ml import HiggsML, TopTagging
from pd4ml.adapters.common import EventArrays
from pd4ml.datasets import BUILT_IN
from pd4ml.datasets.augment import (
    Augmentation,
    AugmentationError,
    CartesianMomenta,
    ColumnReflection,
    Compose,
    GroupAugmentation,
    PolarAngles,
)
from pd4ml.datasets.base import PreparedData
from pd4ml.datasets.higgsml import DERIVED, OBJECTS, MomentumAugmentation
from pd4ml.graphs import knn_neighbours
from pd4ml.testing import ArchiveServer
from tests.cases import CASES, World

NO_SYMMETRY = ["smartbkg", "spinodal", "eos", "airshower", "calice_ahcal", "ild_photon_showers"]
BATCH = 64


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ArchiveServer() as server:
        yield World(tmp_path_factory.mktemp("augment"), server)


def first_batch(data: PreparedData, n: int = BATCH) -> dict[str, np.ndarray]:
    """The first ``n`` events as the torch adapter reads them (node indices int64)."""
    return EventArrays(data).read(slice(0, n))


def snapshot(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.array(values, copy=True) for name, values in batch.items()}


def assert_same_layout(got: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None:
    assert list(got) == list(batch)
    for name, values in batch.items():
        assert got[name].shape == values.shape and got[name].dtype == values.dtype, name


def assert_batches_equal(got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def check_protocol(augmentation: Augmentation, batch: dict[str, np.ndarray], n: int) -> None:
    """Layout kept, input untouched, ``random`` reproducible, n ``variants``, the first the
    identity."""
    assert isinstance(augmentation, Augmentation)
    before = snapshot(batch)
    shuffled = augmentation.random(batch, np.random.default_rng(3))
    assert_same_layout(shuffled, batch)
    assert_batches_equal(batch, before)  # the input is untouched
    assert_batches_equal(augmentation.random(batch, np.random.default_rng(3)), shuffled)
    other = augmentation.random(batch, np.random.default_rng(4))
    assert not np.array_equal(other["features"], shuffled["features"])
    assert not np.array_equal(shuffled["features"], batch["features"])
    copies = augmentation.variants(batch, n)
    assert len(copies) == n
    assert_batches_equal(copies[0], batch)
    for copy in copies:
        assert_same_layout(copy, batch)
    assert not np.array_equal(copies[-1]["features"], batch["features"])
    assert_batches_equal(batch, before)


# -- HiggsML ------------------------------------------------------------------------------------


def physical(batch: Mapping[str, np.ndarray], data: PreparedData) -> dict[str, np.ndarray]:
    """Unscaled features by name (NaN where missing)."""
    info = data.metadata["info"]
    values = batch["features"] * np.asarray(info["scale"]) + np.asarray(info["mean"])
    values = np.where(batch["missing"], np.nan, values)
    return {name: values[:, i] for i, name in enumerate(info["feature_names"])}


def cartesian(world: World, align: bool = True) -> PreparedData:
    if align:
        return world.data("higgsml")
    return world.variant("higgsml").load_data(
        "train", settings=world.settings, cartesian=True, align=False
    )


def test_higgsml_cartesian_follows_the_protocol(world: World) -> None:
    data = cartesian(world)
    augmentation = HiggsML.augmentation(data)
    assert isinstance(augmentation, CartesianMomenta)
    check_protocol(augmentation, first_batch(data), 8)


def test_higgsml_rotation_and_flips_act_on_every_momentum(world: World) -> None:
    data = cartesian(world)
    augmentation = HiggsML.augmentation(data)
    assert isinstance(augmentation, CartesianMomenta)
    batch = first_batch(data)
    parameters = augmentation.draw(BATCH, np.random.default_rng(5))
    got = augmentation.apply(batch, parameters)
    before, after = physical(batch, data), physical(got, data)
    angle, flip_y, flip_z = parameters["angle"], parameters["flip_y"], parameters["flip_z"]
    for name in [*(f"PRI_{obj}" for obj in OBJECTS), "PRI_met"]:
        px, py = before[f"{name}_px"], before[f"{name}_py"]
        expected_x = px * np.cos(angle) - py * np.sin(angle)
        expected_y = (px * np.sin(angle) + py * np.cos(angle)) * flip_y
        np.testing.assert_allclose(after[f"{name}_px"], expected_x, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(after[f"{name}_py"], expected_y, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(  # pT of every object and the missing ET
            np.hypot(after[f"{name}_px"], after[f"{name}_py"]), np.hypot(px, py), rtol=1e-4
        )
        if name != "PRI_met":
            np.testing.assert_allclose(
                after[f"{name}_pz"], before[f"{name}_pz"] * flip_z, rtol=1e-4, atol=1e-2
            )
    names = data.metadata["info"]["feature_names"]
    invariant = [names.index(name) for name in [*DERIVED, "PRI_met_sumet", "PRI_jet_all_pt"]]
    np.testing.assert_array_equal(got["features"][:, invariant], batch["features"][:, invariant])
    assert batch["missing"].any() and (got["features"][batch["missing"]] == 0).all()


def test_higgsml_inverse_transform_recovers_the_input(world: World) -> None:
    data = cartesian(world)
    augmentation = HiggsML.augmentation(data)
    assert isinstance(augmentation, CartesianMomenta)
    batch = first_batch(data)
    parameters = augmentation.draw(BATCH, np.random.default_rng(6))
    # (flip_y ∘ R(α))⁻¹ is R(-α) without a y flip and the same transform with one
    inverse = {
        **parameters,
        "angle": np.where(parameters["flip_y"] < 0, parameters["angle"], -parameters["angle"]),
    }
    back = augmentation.apply(augmentation.apply(batch, parameters), inverse)
    np.testing.assert_allclose(back["features"], batch["features"], atol=2e-4)
    assert not np.allclose(augmentation.apply(batch, parameters)["features"], batch["features"])


def test_higgsml_batch_variants_equal_the_array_form(world: World) -> None:
    data = cartesian(world)
    augmentation = HiggsML.augmentation(data)
    assert isinstance(augmentation, CartesianMomenta)
    batch = first_batch(data)
    info = data.metadata["info"]
    legacy = MomentumAugmentation(info["feature_names"], info["mean"], info["scale"])
    expected = legacy.variants(batch["features"], batch["missing"], n_rotations=2)
    got = augmentation.variants(batch, 8)
    for index in range(1, 8):
        np.testing.assert_array_equal(got[index]["features"], expected[index])
    # the array form of MomentumAugmentation keeps working through the protocol object
    np.testing.assert_array_equal(
        augmentation.random(batch["features"], batch["missing"], np.random.default_rng(1)),
        legacy.random(batch["features"], batch["missing"], np.random.default_rng(1)),
    )
    assert len(augmentation.variants(batch, 5)) == 5  # the first 5 of 2 angles × 4 flips
    assert len(augmentation.variants(batch, 12)) == 12  # 3 angles × 4 flips


def test_higgsml_polar_angles_match_the_cartesian_transform(world: World) -> None:
    polar = world.variant("higgsml").load_data("train", settings=world.settings, cartesian=False)
    augmentation = HiggsML.augmentation(polar)
    assert isinstance(augmentation, PolarAngles)
    batch = first_batch(polar)
    check_protocol(augmentation, batch, 8)
    detector = cartesian(world, align=False)  # the same events, momenta in the detector frame
    reference = HiggsML.augmentation(detector)
    assert isinstance(reference, CartesianMomenta)
    cartesian_batch = first_batch(detector)
    parameters = augmentation.draw(BATCH, np.random.default_rng(7))
    after = physical(augmentation.apply(batch, parameters), polar)
    expected = physical(reference.apply(cartesian_batch, parameters), detector)
    for obj in OBJECTS:
        pt, eta, phi = (after[f"PRI_{obj}_{part}"] for part in ("pt", "eta", "phi"))
        assert np.nanmax(np.abs(phi)) <= np.pi + 1e-5
        for axis, value in (("px", pt * np.cos(phi)), ("py", pt * np.sin(phi))):
            np.testing.assert_allclose(value, expected[f"PRI_{obj}_{axis}"], atol=0.05, rtol=1e-3)
        np.testing.assert_allclose(
            pt * np.sinh(eta), expected[f"PRI_{obj}_pz"], atol=0.05, rtol=1e-3
        )
    met, met_phi = after["PRI_met"], after["PRI_met_phi"]
    np.testing.assert_allclose(met * np.cos(met_phi), expected["PRI_met_px"], atol=0.05, rtol=1e-3)
    assert (augmentation.apply(batch, parameters)["features"][batch["missing"]] == 0).all()


# -- TopTagging -----------------------------------------------------------------------------------


def test_top_tagging_reflects_phi_rel_and_keeps_the_knn_graph(world: World) -> None:
    data = world.data("top_tagging", graph=True)
    augmentation = TopTagging.augmentation(data)
    batch = first_batch(data)
    check_protocol(augmentation, batch, 2)
    reflected = augmentation.variants(batch, 2)[1]
    features, got = batch["features"], reflected["features"]
    np.testing.assert_array_equal(got[..., 3], -features[..., 3])
    others = [0, 1, 2, 4, 5, 6]
    np.testing.assert_array_equal(got[..., others], features[..., others])
    np.testing.assert_allclose(got[..., 6], np.hypot(got[..., 2], got[..., 3]), rtol=1e-5)
    padding = ~batch["mask"]
    assert padding.any() and (got[padding] == 0).all() and not np.signbit(got[padding]).any()
    # the kNN graph recomputed from the reflected coordinates is the stored one
    k = batch["neighbours"].shape[-1]
    neighbours, valid = knn_neighbours(got[..., 2:4], batch["mask"], k)
    np.testing.assert_array_equal(neighbours, batch["neighbours"])
    np.testing.assert_array_equal(valid, batch["neighbour_mask"])
    # random: each jet either unchanged or reflected
    shuffled = augmentation.random(batch, np.random.default_rng(2))["features"]
    same = (shuffled == features).all(axis=(1, 2))
    flipped = (shuffled[..., 3] == -features[..., 3]).all(axis=1)
    assert (same | flipped).all() and (~same).any() and (~flipped).any()


def test_top_tagging_has_two_variants_only(world: World) -> None:
    batch = first_batch(world.data("top_tagging", graph=True))
    augmentation = TopTagging.augmentation(world.data("top_tagging", graph=True))
    assert isinstance(augmentation, GroupAugmentation) and augmentation.max_variants == 2
    with pytest.raises(AugmentationError, match=r"2 distinct variants; ask for n ≤ 2"):
        augmentation.variants(batch, 8)
    with pytest.raises(AugmentationError, match=r"whole number ≥ 1"):
        augmentation.variants(batch, 0)
    with pytest.raises(AugmentationError, match=r"needs the array\(s\) \['features'\]"):
        augmentation.random({"labels": batch["labels"]}, np.random.default_rng(0))


# -- Compose --------------------------------------------------------------------------------------


def test_compose_chains_random_transforms_and_enumerates_the_product(world: World) -> None:
    batch = first_batch(world.data("top_tagging", graph=True))
    phi, eta = ColumnReflection("features", [3]), ColumnReflection("features", [2])
    composed = Compose(phi, eta)
    assert composed.max_variants == 4
    check_protocol(composed, batch, 4)
    copies = composed.variants(batch, 4)
    column = batch["features"][..., 3]
    signs = [1 if np.array_equal(copy["features"][..., 3], column) else -1 for copy in copies]
    assert signs == [1, 1, -1, -1]  # the first member varies slowest
    distinct = {copy["features"].tobytes() for copy in copies}
    assert len(distinct) == 4
    generator = np.random.default_rng(9)
    expected = eta.random(phi.random(batch, generator), generator)
    assert_batches_equal(composed.random(batch, np.random.default_rng(9)), expected)
    with pytest.raises(AugmentationError, match="4 distinct variants"):
        composed.variants(batch, 5)


def test_compose_fills_n_with_an_unlimited_and_a_capped_member(world: World) -> None:
    data = cartesian(world)
    batch = first_batch(data)
    composed = Compose(HiggsML.augmentation(data), ColumnReflection("features", [0]))
    assert composed.max_variants is None
    copies = composed.variants(batch, 8)
    assert len(copies) == 8 and len({copy["features"].tobytes() for copy in copies}) == 8
    assert_batches_equal(copies[0], batch)
    with pytest.raises(AugmentationError, match="at least one"):
        Compose()


def test_cartesian_momenta_without_the_array_form_says_how_to_call_it() -> None:
    augmentation = CartesianMomenta([(0, 1, 2)], np.zeros(3), np.ones(3))
    features, missing = np.ones((2, 3), np.float32), np.zeros((2, 3), bool)
    with pytest.raises(AugmentationError, match=r"random\(batch, generator\)"):
        augmentation.random(features, missing, np.random.default_rng(0))
    got = augmentation.random({"features": features, "missing": missing}, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(got["features"], axis=1), np.sqrt(3), rtol=1e-6)


# -- datasets without an exact symmetry -----------------------------------------------------------


@pytest.mark.parametrize("name", NO_SYMMETRY)
def test_datasets_without_an_exact_symmetry_return_none_and_say_why(
    world: World, name: str
) -> None:
    dataset = CASES[name].dataset
    assert dataset.augmentation(world.data(name)) is None
    assert dataset.symmetries.startswith("None")


def test_every_built_in_dataset_states_its_symmetries() -> None:
    for dataset in BUILT_IN:
        assert len(dataset.symmetries) > 40, dataset.__name__
    assert "Δφ → -Δφ" in TopTagging.symmetries and "y → -y" in HiggsML.symmetries
