"""Docker builds in the lock: the image's id (its content digest) and the image's own compiler versions;
verify rebuilds them bit for bit; a lock whose image differs is refused."""

from __future__ import annotations

import json

import pytest

from assemblage.errors import DriftError
from assemblage.pipeline.embedded import open_dataset, run_recipe
from assemblage.pipeline.lock import lock_for_run, parse_lock
from assemblage.pipeline.rebuild import rebuild
from assemblage.pipeline.verify import verify_run
from assemblage.recipes.load import parse_recipe_text
from tests.conftest import REPO
from tests.integration.docker_support import IMAGE, docker, require_image, skip_without_docker

pytestmark = [pytest.mark.integration, skip_without_docker]


@pytest.fixture(scope="module")
def docker_run(tmp_path_factory):
    require_image()
    text = (
        f"name: repro-docker\nsources:\n  - path: recipes/samples/calc\nmatrix:\n  toolchain: [gcc-12, clang-19]\n"
        f"  opt: [O2]\nbuild:\n  runner: docker\n  image: {IMAGE}\n"
    )
    dataset = open_dataset(tmp_path_factory.mktemp("repro-docker") / "out")
    run_id = run_recipe(dataset, parse_recipe_text(text), text, REPO, jobs=2)
    with dataset.context.sessions() as s:
        return dataset, run_id, lock_for_run(s, run_id)


def test_the_lock_records_the_image_digest_and_the_image_compilers(docker_run):
    _, _, lock = docker_run
    image_id = docker("image", "inspect", "-f", "{{.Id}}", IMAGE, check=True).stdout.strip()
    assert [b.status for b in lock.builds] == ["succeeded", "succeeded"]
    for b in lock.builds:
        assert b.settings.runner == "docker" and b.settings.image.name == IMAGE and b.settings.image.id == image_id
        tc = lock.toolchains[b.toolchain]
        assert tc.runner == "docker" and tc.image.id == image_id
    gcc = next(t for t in lock.toolchains if t.toolchain == "gcc-12")
    in_image = docker(
        "run", "--rm", "--network", "none", "--entrypoint", "", IMAGE, "gcc-12", "--version", check=True
    ).stdout.splitlines()[0]
    pkg = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "",
        IMAGE,
        "dpkg-query",
        "-W",
        "-f=${Version}",
        "gcc-12",
        check=True,
    ).stdout
    assert gcc.tools[0].version == in_image and gcc.packages["gcc-12"] == pkg


def test_verify_of_docker_builds_is_bit_identical(docker_run):
    dataset, run_id, _ = docker_run
    report = verify_run(dataset, run_id=run_id, jobs=2)
    assert report.compared == 2 and report.identical == 2, [d.to_dict() for d in report.differences]


def test_a_lock_whose_image_differs_is_refused(docker_run, tmp_path):
    _, _, lock = docker_run
    doc = json.loads(lock.model_dump_json())
    for tc in doc["toolchains"]:
        tc["image"]["id"] = "sha256:" + "0" * 64
    with pytest.raises(DriftError) as e:
        rebuild(parse_lock(json.dumps(doc)), tmp_path / "again")
    assert "image" in str(e.value) and "sha256:" + "0" * 64 in str(e.value)
    assert not (tmp_path / "again").exists()


def test_dependency_images_recorded_on_a_build_are_checked_by_id(docker_run, tmp_path):
    from assemblage.builds.reproducible import BuildEnvironment, ImageRef
    from assemblage.pipeline.rebuild import check_drift

    _, _, lock = docker_run
    base_id = docker("image", "inspect", "-f", "{{.Id}}", "assemblage-base:bookworm", check=True).stdout.strip()
    env = BuildEnvironment.model_validate({**lock.builds[0].settings.model_dump(), "toolchain": lock.toolchains[0]})
    deps = env.with_dependency_images([ImageRef(name="assemblage-base:bookworm", id=base_id)]).settings()
    assert deps.dependency_images[0].id == base_id
    same = lock.model_copy(update={"builds": [lock.builds[0].model_copy(update={"settings": deps})]})
    assert check_drift(same, same.builds, base=REPO, cache=tmp_path / "cache") == []
    gone = deps.model_copy(
        update={
            "dependency_images": [
                ImageRef(name="assemblage-base:bookworm", id="sha256:" + "1" * 64),
                ImageRef(name="assemblage-h6-repro-missing:x", id="sha256:2"),
            ]
        }
    )
    other = lock.model_copy(update={"builds": [lock.builds[0].model_copy(update={"settings": gone})]})
    drift = check_drift(other, other.builds, base=REPO, cache=tmp_path / "cache")
    assert [d.what for d in drift] == [
        "dependency image assemblage-base:bookworm id",
        "dependency image assemblage-h6-repro-missing:x id",
    ]
    assert drift[0].here == base_id and drift[1].here.startswith("unavailable")
