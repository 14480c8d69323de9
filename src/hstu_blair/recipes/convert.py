"""``convert_run``: a run directory written by hstu-blair 0.1 (pickled ``*.pt`` checkpoints) to
today's model files.

The run's config gives the model to load the old tensors into; :mod:`hstu_blair.run.convert`
reads them safely (tensors and plain values only) and writes the weights and resume state; then
``model.json`` is written as ``train`` writes it.
"""

from __future__ import annotations

from pathlib import Path

from hstu_blair.config import load_config
from hstu_blair.data.dataset import SequenceData
from hstu_blair.models.build import build_model
from hstu_blair.recipes.resolve import ensure_text, run_architecture
from hstu_blair.run.convert import check_convertible, convert_checkpoints
from hstu_blair.run.layout import config_path, model_info_path
from hstu_blair.run.model_files import write_model_info


def convert_run(run_dir: str | Path) -> list[Path]:
    """Write safetensors weights, resume state and ``model.json`` for an hstu-blair 0.1 run directory.

    Returns:
        The files written.

    Raises:
        ConfigError: not a 0.1 run directory, already converted, or a checkpoint that holds
            anything but tensors and plain values.
    """
    run_dir = Path(run_dir)
    check_convertible(run_dir)
    config = load_config(config_path(run_dir))
    data = SequenceData.load(config.data.path)
    text, text_ref = ensure_text(config, data, progress=False)
    arch = run_architecture(config, data, text)
    written = convert_checkpoints(run_dir, build_model(arch, text))
    write_model_info(run_dir, arch, data, text_ref, {"converted_from": "hstu-blair 0.1 pickle checkpoints"})
    return [*written, model_info_path(run_dir)]
