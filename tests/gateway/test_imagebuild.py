"""I/O-free logic of the image builder: recipes, hashes, wheel tags, apt sources, CLI args."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandcell_gateway import imagebuild, rootfs, wheels
from sandcell_gateway.imagebuild import ImageBuildError, ImageRecipe


def write_recipe(root: Path, name: str, **settings: object) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    declared = {"name": name, "tag": f"sandcell/{name}:latest", "kind": "dockerfile"} | settings
    (directory / "image.json").write_text(json.dumps(declared))
    (directory / "Dockerfile").write_text("FROM scratch\n")
    return directory


@pytest.fixture
def recipes(tmp_path: Path) -> dict[str, ImageRecipe]:
    write_recipe(tmp_path, "base", kind="rootfs", tag="sandcell/base:bookworm", suite="bookworm")
    write_recipe(tmp_path, "python", base="base")
    write_recipe(tmp_path, "plugin", base="python")
    return imagebuild.load_recipes(tmp_path)


# --- recipes ---------------------------------------------------------------------------


def test_shipped_recipes_load_and_pin_exact_versions() -> None:
    shipped = imagebuild.load_recipes()
    assert shipped["base"].tag == "sandcell/base:bookworm"
    assert shipped["python"].tag == "sandcell/python:latest"
    assert shipped["python"].base == "base"
    requirements = shipped["python"].requirements
    assert requirements is not None
    text = wheels.check_pinned(requirements)
    assert {"ipykernel", "numpy", "pandas", "matplotlib"} <= set(requirement_names(text))


def requirement_names(text: str) -> list[str]:
    lines = (line.split("#")[0].strip() for line in text.splitlines())
    return [line.split("==")[0] for line in lines if line]


def test_image_tag_maps_names_to_tags() -> None:
    assert imagebuild.image_tag("python") == "sandcell/python:latest"
    assert imagebuild.image_tag("base") == "sandcell/base:bookworm"
    assert imagebuild.image_tag("unknown") == "sandcell/unknown:latest"


def test_image_tag_falls_back_to_convention_without_recipes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(imagebuild.IMAGES_DIR_ENV, str(tmp_path / "absent"))
    assert imagebuild.image_tag("python") == "sandcell/python:latest"


def test_build_order_puts_bases_first(recipes: dict[str, ImageRecipe]) -> None:
    order = imagebuild.build_order(recipes, ["plugin", "python"])
    assert [recipe.name for recipe in order] == ["base", "python", "plugin"]


def test_recipe_name_accepts_names_and_tags(recipes: dict[str, ImageRecipe]) -> None:
    assert imagebuild.recipe_name(recipes, "python") == "python"
    assert imagebuild.recipe_name(recipes, "sandcell/base:bookworm") == "base"
    assert imagebuild.recipe_name(recipes, "python:3.11-slim") is None


def test_unknown_base_is_a_recipe_error(tmp_path: Path) -> None:
    write_recipe(tmp_path, "python", base="nowhere")
    with pytest.raises(ImageBuildError, match="unknown base recipe 'nowhere'"):
        imagebuild.load_recipes(tmp_path)


def test_base_cycle_is_a_recipe_error(tmp_path: Path) -> None:
    write_recipe(tmp_path, "a", base="b")
    write_recipe(tmp_path, "b", base="a")
    with pytest.raises(ImageBuildError, match="cycle"):
        imagebuild.build_order(imagebuild.load_recipes(tmp_path), ["a"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kind": "vm"}, "kind must be one of"),
        ({"base": None}, "needs a base"),
        ({"base": "x", "tag": "sandcell/x"}, "explicit :version"),
    ],
)
def test_invalid_recipes_name_the_problem(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    directory = write_recipe(tmp_path, "x", **settings)
    with pytest.raises(ImageBuildError, match=message):
        ImageRecipe.load(directory)


# --- recipe hash -----------------------------------------------------------------------


def test_recipe_hash_is_stable(tmp_path: Path) -> None:
    directory = write_recipe(tmp_path, "python", base="base")
    inputs = {"base_id": "sha256:1", "base_override": ""}
    assert imagebuild.recipe_hash(directory, inputs) == imagebuild.recipe_hash(directory, inputs)
    assert len(imagebuild.recipe_hash(directory, inputs)) == 64


def test_recipe_hash_covers_files_inputs_and_modes(tmp_path: Path) -> None:
    directory = write_recipe(tmp_path, "python", base="base")
    script = directory / "entry"
    script.write_text("#!/bin/sh\n")
    inputs = {"base_id": "sha256:1"}
    seen = {imagebuild.recipe_hash(directory, inputs)}
    seen.add(imagebuild.recipe_hash(directory, {"base_id": "sha256:2"}))
    seen.add(imagebuild.recipe_hash(directory, {**inputs, "base_override": "python:3.11-slim"}))
    script.chmod(0o755)
    seen.add(imagebuild.recipe_hash(directory, inputs))
    (directory / "Dockerfile").write_text("FROM scratch\nUSER 1000\n")
    seen.add(imagebuild.recipe_hash(directory, inputs))
    assert len(seen) == 5


def test_recipe_hash_ignores_docs_and_caches(tmp_path: Path) -> None:
    directory = write_recipe(tmp_path, "python", base="base")
    before = imagebuild.recipe_hash(directory, {})
    (directory / "README.md").write_text("notes")
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert imagebuild.recipe_hash(directory, {}) == before


def test_recipe_hash_follows_symlinked_directories(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    package.mkdir(parents=True)
    (package / "mod.py").write_text("A = 1\n")
    directory = write_recipe(tmp_path, "plugin", base="base")
    (directory / "pkg").symlink_to(package)
    before = imagebuild.recipe_hash(directory, {})
    (package / "mod.py").write_text("A = 2\n")
    assert imagebuild.recipe_hash(directory, {}) != before


def test_dockerfile_inputs_include_base_identity() -> None:
    inputs = imagebuild.dockerfile_inputs("python:3.11-slim", "sha256:abc", "python:3.11-slim")
    assert inputs == {
        "base": "python:3.11-slim",
        "base_id": "sha256:abc",
        "base_override": "python:3.11-slim",
    }


def test_dockerfile_inputs_hash_the_python_packages_copied_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "src" / "sandcell_fakepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(package.parent))
    recipe = ImageRecipe.load(write_recipe(tmp_path, "gw", base="base",
                                           python_packages=["sandcell_fakepkg"]))
    before = imagebuild.dockerfile_inputs("b", "sha256:1", None, recipe)
    assert set(before) == {"base", "base_id", "base_override", "package sandcell_fakepkg"}
    (package / "__init__.py").write_text("A = 2\n")
    assert imagebuild.dockerfile_inputs("b", "sha256:1", None, recipe) != before


def test_python_packages_must_be_importable(tmp_path: Path) -> None:
    recipe = ImageRecipe.load(write_recipe(tmp_path, "gw", base="base",
                                           python_packages=["sandcell_no_such_package"]))
    with pytest.raises(ImageBuildError, match="sandcell_no_such_package"):
        imagebuild.dockerfile_inputs("b", "sha256:1", None, recipe)


def test_the_gateway_recipe_carries_the_running_gateway_and_is_not_a_default() -> None:
    gateway = imagebuild.load_recipes()["gateway"]
    assert gateway.tag == "sandcell/gateway:latest" and gateway.base == "base"
    assert gateway.default is False
    assert set(gateway.python_packages) == {"sandcell", "sandcell_gateway", "sandcell_plugin",
                                            "sandcell_agent"}
    import sandcell_gateway
    assert imagebuild.package_dir("sandcell_gateway") == \
        Path(sandcell_gateway.__file__).resolve().parent


# --- CLI arguments ---------------------------------------------------------------------


def test_build_defaults_to_every_image(recipes: dict[str, ImageRecipe]) -> None:
    args = imagebuild.parse_args(["build"])
    assert imagebuild.build_targets(args, recipes) == ["base", "plugin", "python"]
    assert imagebuild.build_options(args, recipes) == imagebuild.BuildOptions()


def test_build_without_names_skips_images_that_are_not_defaults(tmp_path: Path) -> None:
    write_recipe(tmp_path, "base", kind="rootfs", tag="sandcell/base:bookworm", suite="bookworm")
    write_recipe(tmp_path, "python", base="base")
    write_recipe(tmp_path, "gateway", base="base", default=False)
    recipes = imagebuild.load_recipes(tmp_path)
    assert imagebuild.build_targets(imagebuild.parse_args(["build"]), recipes) == ["base", "python"]
    forced = imagebuild.parse_args(["build", "--force"])
    assert imagebuild.build_options(forced, recipes).force == {"base", "python"}
    assert imagebuild.build_targets(imagebuild.parse_args(["build", "--base", "x:1"]),
                                    recipes) == ["python"]
    named = imagebuild.parse_args(["build", "gateway"])
    assert imagebuild.build_targets(named, recipes) == ["gateway"]


def test_base_option_replaces_the_debootstrap_base(recipes: dict[str, ImageRecipe]) -> None:
    args = imagebuild.parse_args(["build", "--base", "python:3.11-slim"])
    assert imagebuild.build_targets(args, recipes) == ["plugin", "python"]
    assert imagebuild.build_options(args, recipes).base_override == "python:3.11-slim"


def test_base_option_applies_only_to_images_on_a_rootfs_base(
    recipes: dict[str, ImageRecipe],
) -> None:
    options = imagebuild.BuildOptions(base_override="python:3.11-slim")
    builder = imagebuild.ImageBuilder(None, recipes, options)
    assert builder._override_for(recipes["python"]) == "python:3.11-slim"
    assert builder._override_for(recipes["plugin"]) is None
    assert builder._override_for(recipes["base"]) is None


def test_force_applies_to_the_named_images(recipes: dict[str, ImageRecipe]) -> None:
    named = imagebuild.parse_args(["build", "--force", "python"])
    assert imagebuild.build_targets(named, recipes) == ["python"]
    assert imagebuild.build_options(named, recipes).force == {"python"}
    everything = imagebuild.parse_args(["build", "--force"])
    assert imagebuild.build_options(everything, recipes).force == set(recipes)


def test_list_takes_no_names() -> None:
    assert imagebuild.parse_args(["list"]).command == "list"
    with pytest.raises(SystemExit):
        imagebuild.parse_args(["list", "python"])


# --- wheels ----------------------------------------------------------------------------


def test_manylinux_platforms_cover_every_older_glibc() -> None:
    platforms = wheels.manylinux_platforms("x86_64", "2.36")
    assert platforms[0] == "manylinux_2_36_x86_64"
    assert platforms[-1] == "manylinux1_x86_64"
    for tag in ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64"):
        assert tag in platforms


def test_manylinux_platforms_for_arm_start_at_2_17() -> None:
    platforms = wheels.manylinux_platforms("aarch64", "2.31")
    assert platforms[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert not any("2010" in tag or "manylinux1" in tag for tag in platforms)


def test_probe_output_becomes_a_python_target() -> None:
    target = wheels.parse_probe("cpython 3 11 x86_64 glibc 2.36\n")
    assert target == wheels.PythonTarget("3.11", "x86_64", "2.36")
    assert target.abi == "cp311"


@pytest.mark.parametrize("output", ["cpython 3 12 x86_64  ", "pypy 3 10 x86_64 glibc 2.36"])
def test_unsupported_bases_are_refused(output: str) -> None:
    with pytest.raises(wheels.WheelError, match="CPython on glibc"):
        wheels.parse_probe(output)


def test_pip_download_targets_the_image_not_the_host(tmp_path: Path) -> None:
    target = wheels.PythonTarget("3.12", "aarch64", "2.36")
    command = wheels.pip_download_command(tmp_path / "req.txt", target, tmp_path / "out")
    joined = " ".join(command)
    assert "--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312" in joined
    assert "--platform manylinux_2_36_aarch64" in joined
    assert command[-4:] == ["-d", str(tmp_path / "out"), "-r", str(tmp_path / "req.txt")]


def test_wheel_cache_key_depends_on_pins_and_target() -> None:
    target = wheels.PythonTarget("3.11", "x86_64", "2.36")
    key = wheels.wheel_cache_key("numpy==2.4.6\n", target)
    assert key == wheels.wheel_cache_key("numpy==2.4.6\n", target)
    assert key != wheels.wheel_cache_key("numpy==2.4.5\n", target)
    other_python = wheels.PythonTarget("3.12", "x86_64", "2.36")
    assert key != wheels.wheel_cache_key("numpy==2.4.6\n", other_python)


def test_wheel_cache_lives_under_xdg_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert wheels.wheel_cache_root() == tmp_path / "sandcell" / "wheels"


@pytest.mark.parametrize("line", ["numpy", "numpy>=2", "numpy~=2.4", "numpy==2.*"])
def test_unpinned_requirements_are_refused(tmp_path: Path, line: str) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# comment\n{line}\n")
    with pytest.raises(wheels.WheelError, match=":2: pin an exact version"):
        wheels.check_pinned(requirements)


def test_pinned_requirements_may_have_extras_comments_and_markers(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    text = (
        "ipykernel==7.4.0  # kernel\n"
        "requests[socks]==2.32.3\n"
        "tomli==2.0.1; python_version < '3.11'\n"
    )
    requirements.write_text(text)
    assert wheels.check_pinned(requirements) == text


# --- apt sources (debootstrap mirror) --------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://archive.ubuntu.com/ubuntu jammy main
deb http://ftp.example/debian bookworm main contrib
deb-src http://ftp.example/debian bookworm main
"""


def test_deb822_sources_are_parsed() -> None:
    sources = rootfs.parse_apt_sources(DEB822)
    assert sources == [
        rootfs.AptSource("http://mirror.example/debian", ("bookworm", "bookworm-updates")),
        rootfs.AptSource("http://security.example/debian-security", ("bookworm-security",)),
    ]


def test_one_line_sources_are_parsed() -> None:
    sources = rootfs.parse_apt_sources(ONE_LINE)
    assert sources == [
        rootfs.AptSource("http://archive.ubuntu.com/ubuntu", ("jammy",)),
        rootfs.AptSource("http://ftp.example/debian", ("bookworm",)),
    ]


def test_mirror_is_the_one_serving_the_suite() -> None:
    sources = rootfs.parse_apt_sources(ONE_LINE) + rootfs.parse_apt_sources(DEB822)
    assert rootfs.pick_mirror(sources, "bookworm", "d") == "http://ftp.example/debian"
    assert rootfs.pick_mirror(sources, "bookworm-security", "d").endswith("/debian-security")


def test_non_debian_host_falls_back_to_the_default_mirror(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(ONE_LINE.splitlines()[1] + "\n")
    assert rootfs.debian_mirror("bookworm", apt_dir=tmp_path) == rootfs.DEFAULT_MIRROR


def test_debootstrap_command_keeps_include_short() -> None:
    spec = rootfs.RootfsSpec.from_settings(
        {"suite": "bookworm", "include": ["python3", "python3-venv", "tini"], "packages": ["x"]}
    )
    command = rootfs.debootstrap_command(spec, Path("/tmp/root"), "http://m/debian")
    assert command == [
        "debootstrap",
        "--variant=minbase",
        "--include=python3,python3-venv,tini",
        "bookworm",
        "/tmp/root",
        "http://m/debian",
    ]


def test_rootfs_ships_release_updates_and_security_sources() -> None:
    text = rootfs.rootfs_sources_list("bookworm", "http://m/debian", "http://s/debian-security")
    assert text.splitlines() == [
        "deb http://m/debian bookworm main",
        "deb http://m/debian bookworm-updates main",
        "deb http://s/debian-security bookworm-security main",
    ]


# --- the shipped Python image recipe ---------------------------------------------------


def test_python_dockerfile_works_with_any_base_and_the_legacy_builder() -> None:
    dockerfile = (imagebuild.load_recipes()["python"].directory / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "ARG BASE_IMAGE=sandcell/base:bookworm" in dockerfile
    assert dockerfile.count("FROM ${BASE_IMAGE}") == 2  # wheels stay in the first stage
    assert "--mount" not in dockerfile  # the legacy builder has no BuildKit
    assert "--no-index --find-links" in dockerfile
    assert "apt-get install -y --no-install-recommends tini" in dockerfile  # for --base
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile
    assert 'CMD ["/usr/local/bin/sandcell-kernel"]' in dockerfile


def test_kernel_script_seeds_home_and_execs_ipykernel() -> None:
    script = imagebuild.load_recipes()["python"].directory / "sandcell-kernel"
    text = script.read_text()
    assert text.startswith("#!/bin/sh\n") and script.stat().st_mode & 0o111
    assert "/opt/sandcell/share/matplotlib" in text
    assert text.rstrip().endswith(
        'exec /opt/sandcell/bin/python -m sandcell_launcher '
        '-f "${SANDCELL_CONNECTION_FILE:-/conn/kernel.json}" \\\n'
        '    --IPKernelApp.extensions=sandcell_output --HistoryManager.enabled=False'
    )
