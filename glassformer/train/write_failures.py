"""A checkpoint write that fails, as one line: which errors the writers raise when the disk
refuses a write (a full disk), and what the user is told: the run directory, the space free
there, whether the previous checkpoint is whole, and what to do."""

import contextlib
import shutil

from safetensors import SafetensorError

from glassformer.errors import GlassformerError
from glassformer.train.memory import format_bytes

# How the writers report a write the disk refused, beside OSError: safetensors as a
# SafetensorError with the reason after "I/O error: ", torch.save's zip writer as a RuntimeError
SAFETENSORS_IO = "I/O error: "
TORCH_SAVE_FAILED = ("[enforce fail at inline_container.cc", "PytorchStreamWriter failed")


class CheckpointWriteError(GlassformerError, OSError):
    """A checkpoint could not be written (a full disk); the previous one is whole."""


@contextlib.contextmanager
def write_failures_explained(run_dir, previous: bool):
    """Inside, a checkpoint write that fails becomes one CheckpointWriteError naming `run_dir`
    and the space free there (`previous`: a checkpoint is already there, and stays whole);
    other errors pass. Enter it before the atomic writes, so that by then they have removed
    their temporary files."""
    try:
        yield
    except (OSError, SafetensorError, RuntimeError) as err:
        cause = write_failure(err)
        if cause is None:
            raise
        try:
            free = f"{format_bytes(shutil.disk_usage(run_dir).free)} is free there"
        except OSError:
            free = "the free space there is unknown"
        then = (f"the previous checkpoint is whole: free some space, then continue with "
                f"`glassformer train --out {run_dir} --resume`" if previous
                else "no checkpoint was written: free some space and train again")
        raise CheckpointWriteError(f"could not write the checkpoint in {run_dir} ({cause}); "
                                   f"{free}; {then}") from None


def write_failure(err: Exception) -> str | None:
    """Why a write failed, if `err` is a writer's report of a failed write; else None."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    first = str(err).partition("\n")[0]
    if isinstance(err, SafetensorError) and SAFETENSORS_IO in first:
        return first.partition(SAFETENSORS_IO)[2]  # "No space left on device (os error 28)"
    if isinstance(err, RuntimeError) and first.startswith(TORCH_SAVE_FAILED):
        return f"torch.save stopped: {first}"
    return None
