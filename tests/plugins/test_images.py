"""The plugin worker recipes link sources from this tree; their hashes must cover them."""

from __future__ import annotations

from pathlib import Path

from sandcell_gateway import imagebuild


def relative_files(name: str) -> set[str]:
    recipe = imagebuild.load_recipes()[name]
    return {p.relative_to(recipe.directory).as_posix() for p in imagebuild.recipe_files(recipe.directory)}


def test_python_worker_recipe_covers_the_kit_and_generated_code() -> None:
    files = relative_files("plugin-python")
    assert {"Dockerfile", "requirements.txt", "sandcell_plugin/host.py", "sandcell_plugin/kit.py",
            "sandcell_plugin/_proto/plugin_pb2.py"} <= files
    assert not any("__pycache__" in f for f in files)


def test_java_worker_recipe_covers_the_proto_host_and_seed_plugins() -> None:
    files = relative_files("plugin-java")
    assert {"plugin.proto", "src/org/sandcell/plugin/PluginHost.java",
            "seed/add_numbers/AddNumbers.java", "seed/multiply_numbers/MultiplyNumbers.java",
            "testdata/sandcell_java_test_plugin/JavaTestPlugin.java"} <= files


def test_a_change_in_a_linked_file_changes_the_hash(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.py").write_text("1")
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "linked").symlink_to(source)
    before = imagebuild.recipe_hash(recipe, {})
    (source / "a.py").write_text("2")
    assert imagebuild.recipe_hash(recipe, {}) != before
