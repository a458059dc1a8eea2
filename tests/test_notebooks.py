"""The course's notebooks (notebooks/*.ipynb): each one executed top to bottom in a Jupyter
kernel of this interpreter, in a temporary working directory, failing with the source and error
of the first cell that raises (`slow`: CI runs them); and, fast, that the README's Learn table
and the committed notebooks agree and every notebook is committed with its outputs."""

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 600  # per cell; a notebook is meant to run in under 3 minutes on 2 cores


class CellFailed(AssertionError):
    """A notebook cell raised: the message holds the cell's number, source and error."""


def kernel_spec(tmp: Path) -> Path:
    """A Jupyter data directory with a `python3` kernel that runs this interpreter (the venv's),
    whatever kernels the machine has installed."""
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(tmp / "kernels" / "python3")  # argv: sys.executable -m ipykernel_launcher
    return tmp


def execute(notebook, workdir: Path, jupyter_data: Path):
    """Run every cell of `notebook` (a NotebookNode, changed in place) with `workdir` as its
    working directory, in the kernel of `jupyter_data`; raise CellFailed naming the first cell
    that raises."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    specs = KernelSpecManager(kernel_dirs=[str(jupyter_data / "kernels")], ensure_native_kernel=False)
    kernel = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)
    client = nbclient.NotebookClient(notebook, km=kernel, timeout=TIMEOUT_S,
                                     resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        index = next((i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"
                      and any(o.output_type == "error" for o in cell.get("outputs", []))), None)
        source = notebook.cells[index].source if index is not None else "?"
        raise CellFailed(f"cell {index} failed:\n{source}\n---\n{err.ename}: {err.evalue}") \
            from None
    return notebook


@pytest.fixture(scope="module")
def jupyter_data(tmp_path_factory):
    return kernel_spec(tmp_path_factory.mktemp("jupyter"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, jupyter_data):
    notebook = execute(nbformat.read(path, as_version=4), tmp_path, jupyter_data)
    assert all(c.get("execution_count") for c in notebook.cells if c.cell_type == "code")


@pytest.mark.slow
def test_a_cell_that_raises_fails_the_run_and_is_named(tmp_path, jupyter_data):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import glassformer\nx = 1"),
        nbformat.v4.new_markdown_cell("a broken cell follows"),
        nbformat.v4.new_code_cell("assert x == 2, 'the claim is wrong'"),
        nbformat.v4.new_code_cell("never = 'reached'")])
    with pytest.raises(CellFailed) as failure:
        execute(notebook, tmp_path, jupyter_data)
    message = str(failure.value)
    assert message.startswith("cell 2 failed:\nassert x == 2"), message
    assert "AssertionError: the claim is wrong" in message
    assert "execution_count" not in notebook.cells[3] or not notebook.cells[3].execution_count


@pytest.mark.slow
def test_the_runner_runs_in_the_notebooks_own_working_directory(tmp_path, jupyter_data):
    """The executed notebook writes where it is told (a temporary directory), never into the
    repository: the runner's working directory reaches the kernel, which runs this interpreter
    (the venv's, with glassformer), whatever kernels the machine has installed."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, sys\nopen('here.txt', 'w').write(os.getcwd() + '\\n' + sys.executable)")])
    execute(notebook, tmp_path, jupyter_data)
    assert (tmp_path / "here.txt").read_text() == f"{tmp_path}\n{sys.executable}"


def learn_table() -> list[tuple[str, str, str]]:
    """The rows (lesson, notebook path, output) of the README's Learn table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.partition("\n## Learn")[2].partition("\n## ")[0]
    rows = re.findall(r"^\| *(.+?) *\| *\[[^\]]*\]\((notebooks/[^)]+\.ipynb)\) *\| *(.+?) *\|$",
                      section, re.M)
    assert rows, "README.md has no Learn table of notebooks"
    return rows


def test_the_readme_learn_table_lists_exactly_the_notebooks():
    listed = [path for _, path, _ in learn_table()]
    assert len(listed) == len(set(listed)) == 16, listed  # the 15 lessons and the real models
    assert listed == sorted(listed), "the table follows the course order (the file names')"
    missing = [path for path in listed if not (ROOT / path).exists()]
    assert not missing, f"the README lists notebooks that do not exist: {missing}"
    unlisted = [p.relative_to(ROOT).as_posix() for p in NOTEBOOKS
                if p.relative_to(ROOT).as_posix() not in listed]
    assert not unlisted, f"notebooks missing from the README's Learn table: {unlisted}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_outputs_and_no_errors(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), \
        f"{path.name}: execute it in place before committing (see README, Learn)"
    assert sum(bool(cell.outputs) for cell in code) >= len(code) // 2, path.name
    errors = [cell.source for cell in code if any(o.output_type == "error" for o in cell.outputs)]
    assert not errors, f"{path.name} was committed with failing cells: {errors}"
    assert path.stat().st_size < 300_000, f"{path.name}: keep figures small (figsize, dpi)"
