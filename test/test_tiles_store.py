"""MBTiles and XYZ stores: schema, TMS flip, metadata, atomic creation, bad input, threads."""
import sqlite3
import threading

import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.tiles.codec import decode_tile, encode_tile, sniff_format
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.store import open_store
from cvgl_ros.tiles.xyz import XYZStore

pytestmark = pytest.mark.core  # ROS-free: also run on Python 3.12, numpy 1.26, OpenCV 4.6 (make test-core312)


def _png(value: int) -> bytes:
    return encode_tile(np.full((256, 256, 3), value, np.uint8), "png")


def test_mbtiles_roundtrip_and_tms_flip(tmp_path):
    path = tmp_path / "c.mbtiles"
    with MBTilesStore.create(path, name="demo", image_format="png", description="d") as store:
        store.put_tile(19, 271000, 180000, _png(7))
        store.put_tile(3, 1, 2, _png(9))
        assert store.get_tile(3, 1, 2) == _png(9)  # a writer sees its own uncommitted tiles
    conn = sqlite3.connect(path)
    rows = sorted(conn.execute("SELECT zoom_level, tile_column, tile_row FROM tiles").fetchall())
    assert rows == [(3, 1, 5), (19, 271000, (1 << 19) - 1 - 180000)]  # TMS rows from the south
    assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x4D504258
    conn.close()
    with MBTilesStore.open(path) as store:
        assert store.get_tile(19, 271000, 180000) == _png(7)
        assert store.get_tile(19, 271000, 180001) is None
        assert store.zoom_levels() == [3, 19]
        assert store.tile_keys(3) == [(3, 1, 2)]
        assert store.tile_count() == 2
        meta = store.metadata
        assert meta["name"] == "demo" and meta["format"] == "png" and meta["description"] == "d"
        assert store.image_format == "png"
        with pytest.raises(InputError):
            store.put_tile(3, 1, 2, _png(1))


def test_atomic_create_leaves_nothing_on_error(tmp_path):
    path = tmp_path / "c.mbtiles"
    with pytest.raises(RuntimeError):
        with MBTilesStore.create(path, name="x") as store:
            store.put_tile(1, 0, 0, _png(1))
            assert not path.exists()  # only the temporary sibling exists while building
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_set_metadata_and_reopen_writable(tmp_path):
    path = tmp_path / "c.mbtiles"
    MBTilesStore.create(path, name="x", image_format="jpg").close()
    with MBTilesStore.open(path, writable=True) as store:
        assert store.image_format == "jpg"
        store.set_metadata(bounds="1,2,3,4", minzoom=19)
        store.put_tile(19, 5, 6, _png(3))
    with MBTilesStore.open(path) as store:
        assert store.metadata["bounds"] == "1,2,3,4"
        assert store.metadata["minzoom"] == "19"
        assert store.get_tile(19, 5, 6) == _png(3)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_open_rejects_non_mbtiles(tmp_path):
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE foo (a INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(InputError, match="not MBTiles"):
        MBTilesStore.open(other)
    text = tmp_path / "t.mbtiles"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an SQLite"):
        MBTilesStore.open(text)
    with pytest.raises(InputError, match="no such"):
        MBTilesStore.open(tmp_path / "missing.mbtiles")
    with pytest.raises(InputError):
        open_store(tmp_path / "missing")


def test_tile_index_validation(tmp_path):
    with MBTilesStore.create(tmp_path / "c.mbtiles", name="x") as store:
        for bad in [(25, 0, 0), (2, 4, 0), (2, 0, -1)]:
            with pytest.raises(InputError):
                store.put_tile(*bad, _png(1))
        with pytest.raises(InputError):
            store.put_tile(2, 0, 0, b"")


def test_xyz_store_and_open_store(tmp_path):
    root = tmp_path / "xyz"
    with XYZStore.create(root, name="x", image_format="png") as store:
        store.put_tile(19, 10, 20, _png(4))
    assert (root / "19" / "10" / "20.png").read_bytes() == _png(4)
    store = open_store(root)
    assert isinstance(store, XYZStore)
    assert store.get_tile(19, 10, 20) == _png(4)
    assert store.get_tile(19, 10, 21) is None
    assert store.zoom_levels() == [19]
    assert store.tile_keys() == [(19, 10, 20)]
    assert store.metadata["name"] == "x"
    # A directory without metadata.json: format from the files.
    (root / "metadata.json").unlink()
    assert XYZStore.open(root).image_format == "png"


def test_codec_roundtrip_and_alpha():
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[:100, :, :3] = 200
    rgba[:100, :, 3] = 255
    data = encode_tile(rgba, "png")
    assert sniff_format(data) == "png"
    dec = decode_tile(data)
    assert not dec.opaque
    assert (dec.alpha[:100] == 255).all() and (dec.alpha[100:] == 0).all()
    assert (dec.rgb[:100] == 200).all()
    assert encode_tile(rgba, "png") == data  # deterministic bytes
    assert sniff_format(encode_tile(rgba[:, :, :3], "jpg")) == "jpg"


def test_jpeg_tiles_decode_to_the_pixels_opencv_gives_and_bad_ones_are_corrupt():
    import cv2

    from cvgl_ros.tiles.codec import CorruptTileError

    rng = np.random.default_rng(4)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), (5, 5), 2.0)
    data = encode_tile(rgb, "jpg")
    dec = decode_tile(data)
    reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert dec.opaque and dec.rgba.shape == (256, 256, 4) and (dec.alpha == 255).all()
    np.testing.assert_array_equal(dec.rgb, reference)
    gray = encode_tile(np.dstack([rgb[:, :, 0]] * 3), "jpg")  # any JPEG comes out RGBA
    assert decode_tile(gray).rgba.shape == (256, 256, 4)
    assert decode_tile(encode_tile(rgb[:128, :128], "jpg"), tile_size=128).rgba.shape == (128, 128, 4)
    with pytest.raises(CorruptTileError, match="expected 256x256"):
        decode_tile(encode_tile(rgb[:128, :128], "jpg"))
    garbled = data[:200] + bytes(len(data) - 202) + b"\xff\xd9"  # intact ends, garbage between
    with pytest.raises(CorruptTileError):
        decode_tile(garbled)


def test_one_writer_many_readers_threads(tmp_path):
    """A writer thread commits batches while reader threads read: readers never see errors
    and every tile they get is complete (one of the committed values)."""
    path = tmp_path / "c.mbtiles"
    MBTilesStore.create(path, name="x", atomic=False).close()
    tiles = {v: _png(v) for v in range(0, 250, 10)}
    errors = []
    done = threading.Event()

    def write():
        try:
            with MBTilesStore.open(path, writable=True) as w:
                for i, (v, blob) in enumerate(tiles.items()):
                    w.put_tile(10, i, 0, blob)
                    w.put_tile(10, 0, 1, blob)
                    w.commit()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    reader_store = MBTilesStore.open(path)

    def read():
        try:
            while not done.is_set():
                blob = reader_store.get_tile(10, 0, 1)
                assert blob is None or blob in tiles.values()
                reader_store.zoom_levels()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert reader_store.tile_count(10) == len(tiles) + 1  # row y=0 plus (0, 1)
    reader_store.close()


def test_reads_mbutil_style_view_schema(tmp_path):
    """MBTiles whose `tiles` is a view over map/images (as mbutil writes them) read fine, write not."""
    path = tmp_path / "view.mbtiles"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE map (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_id TEXT);
        CREATE TABLE images (tile_data BLOB, tile_id TEXT);
        CREATE TABLE metadata (name TEXT, value TEXT);
        CREATE VIEW tiles AS SELECT map.zoom_level AS zoom_level, map.tile_column AS tile_column,
            map.tile_row AS tile_row, images.tile_data AS tile_data
            FROM map JOIN images ON images.tile_id = map.tile_id;
    """)
    conn.execute("INSERT INTO map VALUES (2, 1, 0, 'a')")  # TMS row 0 = XYZ row 3 at zoom 2
    conn.execute("INSERT INTO images VALUES (?, 'a')", (_png(5),))
    conn.execute("INSERT INTO metadata VALUES ('name', 'v'), ('format', 'png')")
    conn.commit()
    conn.close()
    with MBTilesStore.open(path) as store:
        assert store.get_tile(2, 1, 3) == _png(5)
        assert store.tile_keys() == [(2, 1, 3)]
    with pytest.raises(InputError, match="view"):
        MBTilesStore.open(path, writable=True)


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
@pytest.mark.parametrize("size", [256, 512])
def test_header_probe_reads_size_and_rejects_cut_tiles(fmt, size):
    from cvgl_ros.tiles.codec import CorruptTileError
    from cvgl_ros.tiles.validate import check_header, probe_tile, validate_tile

    rng = np.random.default_rng(size)
    blob = encode_tile(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), fmt)
    header = probe_tile(blob)
    assert (header.image_format, header.width_px, header.height_px) == (fmt, size, size)
    validate_tile(blob, size, fmt)
    with pytest.raises(CorruptTileError, match="expected"):
        check_header(blob, 768 - size, fmt)  # the other tile size
    for cut in (len(blob) // 2, len(blob) - 1):
        with pytest.raises(CorruptTileError, match="truncated"):
            probe_tile(blob[:cut])
    with pytest.raises(CorruptTileError):
        validate_tile(blob[:16] + bytes(len(blob) - 16), size)  # the right length, nothing decodable


def test_xyz_writes_and_deletes_stay_inside_the_root(tmp_path):
    from cvgl_ros.tiles.store import TileRefusedError

    outside = tmp_path / "outside"
    (outside / "0").mkdir(parents=True)
    (outside / "0" / "0.png").write_bytes(_png(1))
    with XYZStore.create(tmp_path / "root", name="x") as store:
        store.put_tile(1, 0, 0, _png(2))
        (tmp_path / "root" / "2").symlink_to(outside)  # zoom 2 is a directory elsewhere
        (tmp_path / "root" / "1" / "0" / "1.png").symlink_to(outside / "0" / "0.png")
        with pytest.raises(TileRefusedError, match="outside"):
            store.put_tile(2, 0, 0, _png(3))
        with pytest.raises(TileRefusedError, match="outside"):
            store.delete_tile(2, 0, 0)
        with pytest.raises(TileRefusedError, match="outside"):
            store.read_tile(1, 0, 1)
        store.delete_tile(1, 0, 1)  # the link itself is inside: it goes, its target stays
        assert not (tmp_path / "root" / "1" / "0" / "1.png").is_symlink()
        store.delete_tile(1, 0, 0)
        assert store.get_tile(1, 0, 0) is None
    assert (outside / "0" / "0.png").read_bytes() == _png(1)


def test_xyz_metadata_link_out_of_the_root_is_refused(tmp_path):
    """A metadata.json that links to a JSON file elsewhere would be served as /metadata.json."""
    (tmp_path / "private.json").write_text('{"token": "s3cret"}')
    root = tmp_path / "root"
    with XYZStore.create(root, name="x") as store:
        store.put_tile(1, 0, 0, _png(2))
    (root / "metadata.json").unlink()
    (root / "metadata.json").symlink_to(tmp_path / "private.json")
    with pytest.raises(InputError, match="outside the cache root"):
        XYZStore.open(root)
