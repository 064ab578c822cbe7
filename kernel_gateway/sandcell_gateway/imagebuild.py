"""Build the sandbox images from the recipes in ``sandbox_images/``.

Each sibling directory of ``sandbox_images/`` is one image recipe: an ``image.json``
declaring its name, tag, kind and base, plus whatever that kind needs (a Dockerfile and
pinned ``requirements.txt`` for ``dockerfile`` images; debootstrap settings for
``rootfs`` images). Every image is labelled with the sha256 of its recipe, so building
again with nothing changed is a quick no-op::

    >>> image_tag("python")
    'sandcell/python:latest'
    >>> main(["build", "python"])   # doctest: +SKIP
    0

``sandcell images build [--base IMAGE] [--force] [NAME ...]`` and ``sandcell images list``
are :func:`main`; ``sandcell serve`` calls :func:`ensure_images` at start.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from . import rootfs, wheels

Log = Callable[[str], None]

IMAGES_DIR_ENV = "SANDCELL_IMAGES_DIR"
RECIPE_LABEL = "org.sandcell.recipe"
# Bump when the builder itself changes how an image is made, to invalidate old images.
BUILDER_VERSION = "1"
KINDS = ("rootfs", "dockerfile")
IGNORED_FILES = frozenset({"__pycache__", ".DS_Store", "README.md", ".pytest_cache"})


class ImageBuildError(RuntimeError):
    """An image could not be built; the message is meant for the person running the CLI."""


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- recipes -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecipe:
    """One directory of ``sandbox_images/``, as declared by its ``image.json``.

    >>> recipe = ImageRecipe("python", "sandcell/python:latest", "dockerfile", "base", Path("."))
    >>> recipe.tag
    'sandcell/python:latest'
    """

    name: str
    tag: str
    kind: str
    base: str | None
    directory: Path
    settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> ImageRecipe:
        """Read and validate ``directory/image.json``."""
        settings = json.loads((directory / "image.json").read_text())
        recipe = cls(
            name=settings["name"],
            tag=settings["tag"],
            kind=settings["kind"],
            base=settings.get("base"),
            directory=directory,
            settings=settings,
        )
        recipe.validate()
        return recipe

    def validate(self) -> None:
        """Catch recipe mistakes before a long build, with the file to fix."""
        where = self.directory / "image.json"
        if self.kind not in KINDS:
            raise ImageBuildError(f"{where}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "dockerfile" and not self.base:
            raise ImageBuildError(f"{where}: a dockerfile image needs a base")
        if ":" not in self.tag.rsplit("/", 1)[-1]:
            raise ImageBuildError(f"{where}: tag {self.tag!r} needs an explicit :version")

    @property
    def default(self) -> bool:
        """Whether ``sandcell images build`` (no NAMEs) builds it; ``"default": false`` is for
        images no sandbox needs (the gateway's own), built when named."""
        return bool(self.settings.get("default", True))

    @property
    def python_packages(self) -> tuple[str, ...]:
        """Packages of the running gateway (``sandcell``, ``sandcell_gateway``, ...) that the
        build context gets as ``python_packages/<name>``: the image runs this very code."""
        return tuple(self.settings.get("python_packages", ()))

    @property
    def requirements(self) -> Path | None:
        """The pinned Python requirements, when the image has any."""
        path = self.directory / "requirements.txt"
        return path if path.is_file() else None


def images_dir() -> Path:
    """``$SANDCELL_IMAGES_DIR``, else the recipes this package carries (package data).

    An installed wheel holds a copy of the recipes, symlinks resolved; in a source checkout
    ``sandcell_gateway/sandbox_images`` is a symlink to the top-level ``sandbox_images/``.
    Both hash alike (:func:`recipe_hash` follows links), so images built from a checkout
    are current for the wheel made from it.
    """
    configured = os.environ.get(IMAGES_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent / "sandbox_images"


def load_recipes(root: Path | None = None) -> dict[str, ImageRecipe]:
    """Every recipe under ``root``, by name; their bases must be recipes too."""
    root = root or images_dir()
    if not root.is_dir():
        raise ImageBuildError(f"no image recipes at {root}: set {IMAGES_DIR_ENV}")
    recipes: dict[str, ImageRecipe] = {}
    for path in sorted(root.glob("*/image.json")):
        recipe = ImageRecipe.load(path.parent)
        if recipe.name in recipes:
            raise ImageBuildError(f"two recipes are named {recipe.name!r} under {root}")
        recipes[recipe.name] = recipe
    for recipe in recipes.values():
        if recipe.base and recipe.base not in recipes:
            raise ImageBuildError(f"{recipe.name}: unknown base recipe {recipe.base!r}")
    return recipes


def image_tag(name: str) -> str:
    """The Docker tag of image ``name`` ('python' -> 'sandcell/python:latest').

    Falls back to the naming convention when the recipes are not on disk (an installed
    gateway runs images it did not build).
    """
    try:
        return load_recipes()[name].tag
    except (ImageBuildError, KeyError, OSError):
        return f"sandcell/{name}:latest"


def build_order(recipes: Mapping[str, ImageRecipe], names: Iterable[str]) -> list[ImageRecipe]:
    """``names`` and their bases, every base before the images built on it."""
    order: list[ImageRecipe] = []
    for name in names:
        for recipe in _lineage(recipes, name):
            if recipe not in order:
                order.append(recipe)
    return order


def _lineage(recipes: Mapping[str, ImageRecipe], name: str) -> list[ImageRecipe]:
    """The chain root base -> ... -> ``name``; a cycle is a recipe error."""
    chain: list[ImageRecipe] = []
    current: str | None = name
    while current is not None:
        if current not in recipes:
            raise ImageBuildError(f"no image recipe named {current!r} (have {sorted(recipes)})")
        if recipes[current] in chain:
            raise ImageBuildError(f"image recipes have a base cycle through {current!r}")
        chain.insert(0, recipes[current])
        current = recipes[current].base
    return chain


# --- recipe hashes -------------------------------------------------------------------


def recipe_files(directory: Path) -> Iterator[Path]:
    """The files that define an image, in a stable order (docs and caches excluded).

    Symlinked directories are followed, as the build context copies them: a recipe can
    link a package of this source tree into its context (``plugin-python`` does).
    """
    found = [Path(root) / name for root, _, names in os.walk(directory, followlinks=True)
             for name in names]
    for path in sorted(found):
        relative = path.relative_to(directory)
        if path.is_file() and not IGNORED_FILES.intersection(relative.parts):
            yield path


def recipe_hash(directory: Path, inputs: Mapping[str, str]) -> str:
    """sha256 over the recipe's files (names, modes, contents) and the build inputs.

    ``inputs`` carries what is not in the directory but still shapes the image: the
    base image id, the --base value, the Debian mirror.
    """
    digest = hashlib.sha256(f"sandcell-builder {BUILDER_VERSION}\n".encode())
    for path in recipe_files(directory):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        mode = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"file {path.relative_to(directory).as_posix()} {mode} {content}\n".encode())
    for key in sorted(inputs):
        digest.update(f"input {key}={inputs[key]}\n".encode())
    return digest.hexdigest()


def rootfs_inputs(recipe: ImageRecipe) -> dict[str, str]:
    """A root filesystem also depends on the mirror it was bootstrapped from."""
    spec = rootfs.RootfsSpec.from_settings(recipe.settings)
    return {"mirror": rootfs.debian_mirror(spec.suite)}


def dockerfile_inputs(base_ref: str, base_id: str, base_override: str | None,
                      recipe: ImageRecipe | None = None) -> dict[str, str]:
    """A Dockerfile image depends on exactly which base image it starts FROM, and on the
    content of the Python packages it copies in."""
    inputs = {"base": base_ref, "base_id": base_id, "base_override": base_override or ""}
    for name in recipe.python_packages if recipe else ():
        inputs[f"package {name}"] = recipe_hash(package_dir(name), {})
    return inputs


def package_dir(name: str) -> Path:
    """Where the running interpreter imports package ``name`` from (a checkout or a venv)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImageBuildError(f"python_packages: {name!r} is not an importable package here")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


# --- building ------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What happened to one image: ``built``, ``up to date`` or ``present``."""

    name: str
    tag: str
    image_id: str
    status: str
    seconds: float
    size: int


@dataclass(frozen=True)
class BuildOptions:
    """How to build: which images to rebuild regardless, and an optional registry base.

    ``only_missing`` is ``sandcell serve``'s mode: never rebuild an image that exists,
    except those in ``refresh``, which are rebuilt when stale.
    """

    force: frozenset[str] = frozenset()
    base_override: str | None = None
    only_missing: bool = False
    refresh: frozenset[str] = frozenset()


class ImageBuilder:
    """Builds recipes in base-first order, skipping images whose recipe label matches.

    >>> builder = ImageBuilder(docker.from_env(), load_recipes())  # doctest: +SKIP
    >>> [r.status for r in builder.build(["python"])]  # doctest: +SKIP
    ['up to date', 'up to date']
    """

    def __init__(
        self,
        client: docker.DockerClient,
        recipes: Mapping[str, ImageRecipe],
        options: BuildOptions | None = None,
        log: Log = _stderr,
    ) -> None:
        self.client = client
        self.recipes = recipes
        self.options = options or BuildOptions()
        self.log = log
        self._results: dict[str, BuildResult] = {}

    def build(self, names: Iterable[str]) -> list[BuildResult]:
        """Bring ``names`` (and the bases they need) up to date.

        Every failure leaves as ImageBuildError, so callers handle one exception type.
        """
        try:
            for name in names:
                self._ensure(self.recipes[recipe_name(self.recipes, name) or _missing(name)])
        except (rootfs.RootfsError, wheels.WheelError) as exc:
            raise ImageBuildError(str(exc)) from exc
        except docker.errors.DockerException as exc:
            raise ImageBuildError(f"Docker Engine error: {exc}") from exc
        return list(self._results.values())

    def _ensure(self, recipe: ImageRecipe) -> BuildResult:
        """Build ``recipe`` once per run, after its base; memoised by name."""
        if recipe.name not in self._results:
            self._results[recipe.name] = self._ensure_uncached(recipe)
        return self._results[recipe.name]

    def _ensure_uncached(self, recipe: ImageRecipe) -> BuildResult:
        started = time.monotonic()
        existing = find_image(self.client, recipe.tag)
        if existing is not None and self.options.only_missing \
                and recipe.name not in self.options.refresh:
            return _result(recipe, existing, "present", started)
        if recipe.kind == "rootfs":
            result = self._ensure_rootfs(recipe, existing, started)
        else:
            result = self._ensure_dockerfile(recipe, existing, started)
        if existing is not None and result.image_id != existing.id:
            remove_superseded(self.client, existing.id, self.log)
        return result

    def _uses_override(self, recipe: ImageRecipe) -> bool:
        """--base replaces a debootstrap base for the images built directly on it."""
        base = self.recipes.get(recipe.base or "")
        return bool(self.options.base_override and base and base.kind == "rootfs")

    def _is_current(self, recipe: ImageRecipe, existing: Any, digest: str) -> bool:
        if existing is None or recipe.name in self.options.force:
            return False
        return bool(existing.labels.get(RECIPE_LABEL) == digest)

    def _ensure_rootfs(self, recipe: ImageRecipe, existing: Any, started: float) -> BuildResult:
        """debootstrap + docker import, unless the image already has this recipe."""
        digest = recipe_hash(recipe.directory, rootfs_inputs(recipe))
        if self._is_current(recipe, existing, digest):
            return _result(recipe, existing, "up to date", started)
        self.log(f"==> {recipe.name}: building {recipe.tag} (recipe {digest[:12]})")
        spec = rootfs.RootfsSpec.from_settings(recipe.settings)
        changes = [*spec.changes, f"LABEL {RECIPE_LABEL}={digest}"]
        with rootfs.TemporaryRootfs() as directory:
            rootfs.build_rootfs(spec, directory, rootfs_inputs(recipe)["mirror"], self.log)
            rootfs.import_rootfs(self.client, directory, recipe.tag, changes, self.log)
        return _result(recipe, self.client.images.get(recipe.tag), "built", started)

    def _ensure_dockerfile(
        self, recipe: ImageRecipe, existing: Any, started: float
    ) -> BuildResult:
        """docker build with the base's id in the hash, so a new base rebuilds this."""
        base_ref, base_id = self._base_image(recipe)
        inputs = dockerfile_inputs(base_ref, base_id, self._override_for(recipe), recipe)
        digest = recipe_hash(recipe.directory, inputs)
        if self._is_current(recipe, existing, digest):
            return _result(recipe, existing, "up to date", started)
        self.log(f"==> {recipe.name}: building {recipe.tag} FROM {base_ref} (recipe {digest[:12]})")
        with tempfile.TemporaryDirectory(prefix=f"sandcell-{recipe.name}-") as context:
            self._prepare_context(recipe, base_ref, Path(context))
            docker_build(self.client, Path(context), recipe.tag, base_ref, digest, self.log)
        return _result(recipe, self.client.images.get(recipe.tag), "built", started)

    def _override_for(self, recipe: ImageRecipe) -> str | None:
        return self.options.base_override if self._uses_override(recipe) else None

    def _base_image(self, recipe: ImageRecipe) -> tuple[str, str]:
        """(reference, id) of the image ``recipe`` builds FROM, building it if needed."""
        override = self._override_for(recipe)
        if override:
            return override, local_image(self.client, override, self.log).id
        result = self._ensure(self.recipes[str(recipe.base)])
        return result.tag, result.image_id

    def _prepare_context(self, recipe: ImageRecipe, base_ref: str, context: Path) -> None:
        """The recipe's files, plus ``wheels/`` matching the base's Python and platform."""
        ignore = shutil.ignore_patterns(*IGNORED_FILES)
        shutil.copytree(recipe.directory, context, ignore=ignore, dirs_exist_ok=True)
        for name in recipe.python_packages:  # symlinks resolved, as a wheel holds them
            shutil.copytree(package_dir(name), context / "python_packages" / name, ignore=ignore)
        (context / "wheels").mkdir(exist_ok=True)
        if recipe.requirements is not None:
            target = wheels.probe_python(self.client, base_ref)
            self.log(f"    base {base_ref}: {target.describe()}")
            cached = wheels.ensure_wheels(recipe.requirements, target, self.log)
            wheels.link_tree(cached, context / "wheels")


def _missing(name: str) -> str:
    raise ImageBuildError(f"no image recipe named {name!r}")


def _result(recipe: ImageRecipe, image: Any, status: str, started: float) -> BuildResult:
    seconds = time.monotonic() - started
    size = int(image.attrs.get("Size", 0))
    return BuildResult(recipe.name, recipe.tag, str(image.id), status, seconds, size)


def find_image(client: docker.DockerClient, tag: str) -> Any | None:
    """The local image called ``tag``, or None; never pulls."""
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def remove_superseded(client: docker.DockerClient, image_id: str, log: Log) -> None:
    """Drop the image a rebuild replaced, unless a container or child image still uses it."""
    try:
        client.images.remove(image_id)
        log(f"    removed superseded image {image_id[7:19]}")
    except docker.errors.APIError:
        log(f"    kept superseded image {image_id[7:19]} (still in use)")


def local_image(client: docker.DockerClient, reference: str, log: Log) -> Any:
    """A --base image: use the local copy, else pull it (needs a registry)."""
    image = find_image(client, reference)
    if image is not None:
        return image
    log(f"    pulling {reference}")
    try:
        return client.images.pull(reference)
    except docker.errors.APIError as exc:
        message = f"--base {reference}: not present locally and pull failed: {exc}"
        raise ImageBuildError(message) from exc


def docker_build(
    client: docker.DockerClient, context: Path, tag: str, base_ref: str, digest: str, log: Log
) -> None:
    """Run the (legacy) builder, streaming its output; errors become ImageBuildError."""
    stream = client.api.build(
        path=str(context),
        tag=tag,
        labels={RECIPE_LABEL: digest},
        buildargs={"BASE_IMAGE": base_ref},
        pull=False,
        rm=True,
        forcerm=True,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            raise ImageBuildError(f"docker build of {tag} failed: {chunk['error'].strip()}")
        for line in str(chunk.get("stream", "")).splitlines():
            if line.strip():
                log("    " + line)


# --- entry points --------------------------------------------------------------------


def ensure_images(names: Iterable[str]) -> None:
    """Build only the images (and needed bases) that do not exist; used at gateway start.

    ``names`` may be recipe names (``python``) or tags (``sandcell/python:latest``); a
    tag no recipe builds must already be present, or the gateway could not run it.
    """
    client, recipes, names = _docker_client(), load_recipes(), list(names)
    _check_foreign_images(client, recipes, names)
    wanted = [name for name in names if recipe_name(recipes, name)]
    options = BuildOptions(only_missing=True)
    for result in ImageBuilder(client, recipes, options).build(wanted):
        if result.status == "built":
            _stderr(f"built {result.tag} in {result.seconds:.0f}s")


def ensure_current(names: Iterable[str], log: Log = _stderr) -> list[BuildResult]:
    """Build ``names`` when missing or stale, and their bases only when missing: one image
    brought up to date (the gateway image, by its test) without rebuilding the images that
    everything else runs on."""
    client, recipes, names = _docker_client(), load_recipes(), list(names)
    options = BuildOptions(only_missing=True, refresh=frozenset(names))
    return ImageBuilder(client, recipes, options, log).build(names)


def recipe_name(recipes: Mapping[str, ImageRecipe], name_or_tag: str) -> str | None:
    """The recipe called ``name_or_tag`` or tagged so; None when no recipe builds it."""
    if name_or_tag in recipes:
        return name_or_tag
    return next((r.name for r in recipes.values() if r.tag == name_or_tag), None)


def _check_foreign_images(
    client: docker.DockerClient, recipes: Mapping[str, ImageRecipe], names: Iterable[str]
) -> None:
    for name in names:
        if recipe_name(recipes, name) is None and find_image(client, name) is None:
            raise ImageBuildError(f"image {name!r} is not present and no recipe builds it")


def _docker_client() -> docker.DockerClient:
    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"cannot reach the Docker Engine: {exc}") from exc


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """``build [--base IMAGE] [--force] [NAME ...]`` or ``list``."""
    parser = argparse.ArgumentParser(prog="sandcell images", description="Sandbox images.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build images whose recipe changed")
    build.add_argument("names", nargs="*", metavar="NAME", help="images to build (default: all but those marked \"default\": false, "
                            "such as gateway)")
    build.add_argument("--force", action="store_true", help="rebuild NAMEs even if current")
    build.add_argument(
        "--base",
        metavar="IMAGE",
        help="start from this image (e.g. python:3.11-slim) instead of the debootstrap base",
    )
    commands.add_parser("list", help="show the images and whether they are current")
    return parser.parse_args(list(argv))


def build_options(args: argparse.Namespace, recipes: Mapping[str, ImageRecipe]) -> BuildOptions:
    """--force applies to the NAMEs given (the default images when none are given)."""
    names = args.names or [name for name, recipe in recipes.items() if recipe.default]
    return BuildOptions(
        force=frozenset(names) if args.force else frozenset(),
        base_override=args.base,
    )


def build_targets(args: argparse.Namespace, recipes: Mapping[str, ImageRecipe]) -> list[str]:
    """The NAMEs, else every default recipe (but no debootstrap base when --base replaces it)."""
    if args.names:
        return list(args.names)
    defaults = {name: recipe for name, recipe in recipes.items() if recipe.default}
    if args.base:
        return [name for name, recipe in defaults.items() if recipe.kind != "rootfs"]
    return list(defaults)


def main(argv: Sequence[str]) -> int:
    """``sandcell images ...``; returns the process exit status."""
    args = parse_args(argv)
    try:
        recipes = load_recipes()
        if args.command == "list":
            return list_images(_docker_client(), recipes)
        return run_build(_docker_client(), recipes, args)
    except ImageBuildError as exc:
        _stderr(f"error: {exc}")
        return 1


def run_build(
    client: docker.DockerClient, recipes: Mapping[str, ImageRecipe], args: argparse.Namespace
) -> int:
    builder = ImageBuilder(client, recipes, build_options(args, recipes))
    results = builder.build(build_targets(args, recipes))
    _stderr("")
    for result in results:
        _stderr(format_result(result))
    return 0


def format_result(result: BuildResult) -> str:
    """One summary line: name, tag, what happened, how long, how big."""
    return (
        f"{result.name:<16} {result.tag:<32} {result.status:<10} "
        f"{result.seconds:6.1f}s  {result.size / 1e6:7.0f} MB  {result.image_id[7:19]}"
    )


def list_images(client: docker.DockerClient, recipes: Mapping[str, ImageRecipe]) -> int:
    """Print each recipe's image: id, size, and whether its recipe label is current."""
    print(f"{'NAME':<16} {'TAG':<32} {'STATE':<10} {'SIZE':>8}  ID")
    for recipe in build_order(recipes, recipes):
        image = find_image(client, recipe.tag)
        size = f"{int(image.attrs['Size']) / 1e6:.0f} MB" if image else "-"
        ident = str(image.id)[7:19] if image else "-"
        state = image_state(client, recipes, recipe, image)
        print(f"{recipe.name:<16} {recipe.tag:<32} {state:<10} {size:>8}  {ident}")
    return 0


def image_state(
    client: docker.DockerClient, recipes: Mapping[str, ImageRecipe], recipe: ImageRecipe, image: Any
) -> str:
    """``missing``, ``current`` (label matches the recipe) or ``stale``."""
    if image is None:
        return "missing"
    if recipe.kind == "rootfs":
        inputs = rootfs_inputs(recipe)
    else:
        base = find_image(client, recipes[str(recipe.base)].tag)
        if base is None:
            return "stale"
        inputs = dockerfile_inputs(recipes[str(recipe.base)].tag, str(base.id), None, recipe)
    current = image.labels.get(RECIPE_LABEL) == recipe_hash(recipe.directory, inputs)
    return "current" if current else "stale"
