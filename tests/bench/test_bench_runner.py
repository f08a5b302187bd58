"""The runner: core metrics only, every byte counted, missing and failed codecs reported not dropped."""

import json
import math

import numpy as np
import pytest

import napari_sci.core.metrics
from napari_sci.bench import runner
from napari_sci.bench.codecs import Target, make_codec
from napari_sci.bench.results import BenchReport, merge_reports
from napari_sci.bench.runner import CodecMissing, NamedVolume, TaskDone, measure, run_benchmark
from napari_sci.bench.settings import BenchSettings


@pytest.fixture(scope="module")
def small(lsm64):
    return NamedVolume("lsm", lsm64[:8, :32, :32].copy(), "crop")


def test_metrics_are_the_cores(small, monkeypatch):
    assert runner.metrics is napari_sci.core.metrics
    calls = []
    real = napari_sci.core.metrics.evaluate

    def spy(original, reconstruction, thresholds=(200.0, 500.0)):
        calls.append((original, reconstruction))
        return real(original, reconstruction, thresholds)

    monkeypatch.setattr(napari_sci.core.metrics, "evaluate", spy)
    report = run_benchmark([small], BenchSettings(bpvs=(1.0, 2.0), codecs=("zfp",)))
    assert len(calls) == 2
    assert all(original is small.array for original, _ in calls)
    for (_, decoded), result in zip(calls, report.results):
        assert result.psnr_data == real(small.array, decoded).psnr_data


class Recording:
    """Wraps a codec to keep the bytes its decoder was given."""

    def __init__(self, codec):
        self.codec, self.name, self.blobs = codec, codec.name, []

    def compress(self, volume, target, cache=None):
        return self.codec.compress(volume, target, cache)

    def decompress(self, blob):
        self.blobs.append(blob)
        return self.codec.decompress(blob)


@pytest.mark.parametrize("name", ["jpeg2000", "jpeg", "sz3"])
def test_bytes_counted_are_everything_the_decoder_gets(small, name):
    codec = Recording(make_codec(name, BenchSettings()))
    target = Target(2.0, small.array.size)
    result = measure(codec, small, target, None, (200.0,), -math.inf)
    assert result.ok
    (blob,) = codec.blobs
    assert result.bytes == len(blob)
    assert result.bpv == pytest.approx(8 * len(blob) / small.array.size)
    assert result.target_bytes == target.bytes == math.floor(2.0 * small.array.size / 8)


def test_missing_codec_is_reported_not_dropped(small):
    events = []
    settings = BenchSettings(bpvs=(1.0,), codecs=("hevc", "zfp"), ffmpeg="/nonexistent/ffmpeg")
    report = run_benchmark([small], settings, on_event=events.append)
    assert [m.codec for m in report.missing] == ["hevc"]
    assert "ffmpeg" in report.missing[0].reason
    assert [e.missing.codec for e in events if isinstance(e, CodecMissing)] == ["hevc"]
    assert [r.codec for r in report.results] == ["zfp"]
    saved = json.loads(report.to_json())
    assert saved["missing"] == [{"codec": "hevc", "reason": report.missing[0].reason}]


def test_failed_task_is_recorded(small):
    events = []
    report = run_benchmark([small], BenchSettings(bpvs=(0.001, 1.0), codecs=("nerf",), steps=2),
                           on_event=events.append)
    failed, ok = report.results
    assert failed.status == "failed"
    assert "cannot hold" in failed.notes[0]
    assert failed.psnr_data is None
    assert failed.target_bpv == 0.001
    assert ok.ok
    assert ok.bytes <= ok.target_bytes
    assert sum(isinstance(e, TaskDone) for e in events) == 2


def test_report_json_round_trip(small):
    report = run_benchmark([small], BenchSettings(bpvs=(1.0,), codecs=("sz3",)))
    again = BenchReport.from_json(report.to_json())
    assert again.results == report.results
    assert again.settings == report.settings
    assert again.volumes == report.volumes
    assert report.machine["cores"]
    assert report.machine["cpu"]
    result = report.results[0]
    for key in ("psnr_data", "psnr_dtype", "ssim", "bpv", "bytes", "compress_seconds",
                "decompress_seconds", "knob", "knob_value"):
        assert getattr(result, key) is not None
    assert set(result.accuracy) == {"200", "500"}


def test_infinite_psnr_survives_json():
    from napari_sci.bench.results import _finite, _numbers

    data = {"a": math.inf, "b": [1.0, -math.inf], "c": "text"}
    assert _finite(data) == {"a": "inf", "b": [1.0, "-inf"], "c": "text"}
    assert _numbers(_finite(data)) == data
    assert np.isnan(_numbers("nan"))


def test_markdown_tables_quote_the_results(small):
    from napari_sci.bench.markdown import psnr_table, report_markdown

    report = run_benchmark([small], BenchSettings(bpvs=(0.05, 2.0), codecs=("jpeg", "zfp")))
    floor = next(r for r in report.results if r.codec == "jpeg" and r.target_bpv == 0.05)
    assert not floor.reached  # per-slice JPEG headers alone exceed 0.05 BPV of 8×32×32
    table = psnr_table(report, 0.05)
    assert f"{floor.psnr_data:.2f}†" in table
    assert f"@ {floor.bpv:.3f}" in table
    text = report_markdown(report, "napari-sci bench x.tif", ["x.png"])
    assert "napari-sci bench x.tif" in text
    assert "![rate-distortion](x.png)" in text
    for r in report.results:
        assert f"| {r.bytes} |" in text


def test_reports_of_separate_runs_merge(small):
    other = NamedVolume("lsm-b", small.array[:, :16].copy(), "crop")
    first = run_benchmark([small], BenchSettings(bpvs=(1.0,), codecs=("sz3",)))
    second = run_benchmark([other], BenchSettings(bpvs=(2.0,), codecs=("zfp",)))
    merged = merge_reports([first, second])
    assert [r.volume for r in merged.results] == ["lsm", "lsm-b"]
    assert merged.settings.codecs == ("sz3", "zfp")
    assert merged.settings.bpvs == (1.0, 2.0)
    assert [v.name for v in merged.volumes] == ["lsm", "lsm-b"]
    assert BenchReport.from_json(merged.to_json()).results == merged.results
    with pytest.raises(ValueError, match="more than once"):
        merge_reports([first, first])
