"""`smolalign gen --ray`: distilabel's Ray pipeline, two Magpie replicas on a local Ray cluster. In a file of its own
so that `make test`'s two workers run it last, alone: beside another worker's training runs on two cores, Ray's
processes starved (684 s against 51 s alone)."""

from __future__ import annotations

import pytest

from .test_gen import check_dataset, gen, gen_model  # noqa: F401 (gen_model: the fixture)


@pytest.mark.slow
def test_ray_runs_magpie_with_two_replicas(gen_model, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'smolalign[ray]'); CI installs it")
    out = tmp_path / "ray"
    result = gen("magpie-ultra", gen_model, out, "--num-rows", "4", "turns=1", "llm.batch_size=1", "--ray",
                 "ray.replicas=2")
    assert result.returncode == 0, result.stderr[-3000:]
    rows, counts = check_dataset(out, "magpie-ultra", 4)
    log = "".join(p.read_text() for p in (out / "work" / "logs").glob("*.log"))
    assert "in 'magpie' (replica ID: 1)" in log, "the second Magpie replica processed a batch"
