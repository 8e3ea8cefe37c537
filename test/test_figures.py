"""save_figure: a PNG of the figure's size at the dpi asked, written atomically, the figure closed."""
import os

import numpy as np
import pytest
from matplotlib.artist import Artist

from cvgl_ros.atomic import claim_output, release_claims, sidecar_path
from cvgl_ros.evaluation.figures import pyplot, save_figure
from cvgl_ros.imaging import decode_compressed


class _FailsToDraw(Artist):
    def draw(self, renderer):
        raise RuntimeError("the draw failed half-way")


def _figure(width_in=4.0, height_in=2.0, colour=(1.0, 0.0, 0.0)):
    plt = pyplot()
    fig = plt.figure(figsize=(width_in, height_in))
    fig.patch.set_facecolor(colour)
    return plt, fig


def test_a_figure_becomes_a_png_of_its_size_at_the_dpi_and_is_closed(tmp_path):
    plt, fig = _figure()
    out = save_figure(fig, tmp_path / "red.png", dpi=50)
    assert out == tmp_path / "red.png" and not plt.fignum_exists(fig.number)
    rgb = decode_compressed("png", np.frombuffer(out.read_bytes(), np.uint8))
    assert rgb.shape == (100, 200, 3)
    assert np.all(rgb[50, 100] == (255, 0, 0))
    assert sorted(os.listdir(tmp_path)) == ["red.png"]  # no temporary file left beside it


def test_a_write_that_fails_half_way_leaves_the_earlier_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "plot.png"
    save_figure(_figure(colour=(0.0, 0.0, 1.0))[1], path, dpi=20)
    before = path.read_bytes()
    plt, fig = _figure()
    # PIL fails once it has begun the file (a direct savefig would leave a truncated PNG)
    with pytest.raises(AttributeError):
        save_figure(fig, path, dpi=20, pil_kwargs={"pnginfo": "not a PngInfo"})
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["plot.png"]
    assert not plt.fignum_exists(fig.number)  # closed on failure too
    plt, fig = _figure()
    fig.add_artist(_FailsToDraw())
    with pytest.raises(RuntimeError, match="half-way"):
        save_figure(fig, path, dpi=20)
    assert path.read_bytes() == before and not plt.fignum_exists(fig.number)


def test_a_png_is_written_whatever_the_name_and_a_claimed_output_gets_its_marker(tmp_path):
    path = tmp_path / "preview.out"
    claim_output(path, kind="file", command="test figure")
    try:
        save_figure(_figure()[1], path, dpi=10)
    finally:
        release_claims()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sidecar_path(path).is_file()  # cvgl's own output: a rerun may replace it
