"""The codec core must import no GUI: the CLI, the API and the tests use it directly."""

import subprocess
import sys

GUI = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_core_and_io_import_no_gui():
    modules = loaded_after("import napari_sci, napari_sci.core.codec, napari_sci.core.lazy, napari_sci.cli")
    assert not modules & set(GUI), modules & set(GUI)


def test_top_level_import_is_light():
    modules = loaded_after("import napari_sci")
    assert "torch" not in modules
    assert not modules & set(GUI)
