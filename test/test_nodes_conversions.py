"""Message <-> core conversions of the nodes: the likelihood cloud codec, poses, GNSS checks."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import NavSatFix

from cvgl_ros.errors import InputError
from cvgl_ros.likelihood import LikelihoodVolume
from cvgl_ros.nodes import conversions as conv
from test_nodes_support import DATUM


@settings(max_examples=20, deadline=None)
@given(k=st.integers(1, 6), h=st.integers(2, 12), w=st.integers(2, 12), seed=st.integers(0, 10**6),
       threshold=st.floats(0.0, 20.0), max_points=st.integers(3, 400), cell=st.floats(0.1, 3.0),
       ce=st.floats(-3000, 3000), cn=st.floats(-3000, 3000))
def test_cloud_round_trip_keeps_the_grid_and_bounds_the_cells_not_sent(k, h, w, seed, threshold, max_points, cell, ce, cn):
    rng = np.random.default_rng(seed)
    ll = (rng.normal(size=(k, h, w)) * 5).astype(np.float32)
    yaws = 0.3 + np.arange(k) * (2 * math.pi / k)
    vol = LikelihoodVolume(ll, ce, cn, cell, yaws, stamp_ns=123)
    msg = conv.volume_to_cloud(vol, threshold_nats=threshold, max_points=max_points)
    back = conv.cloud_to_volume(msg)
    assert back.shape == vol.shape and back.stamp_ns == 123
    assert back.cell_m == pytest.approx(cell, rel=1e-4, abs=1e-3)
    assert back.center_e_m == pytest.approx(ce, abs=2e-3) and back.center_n_m == pytest.approx(cn, abs=2e-3)
    np.testing.assert_allclose(back.yaw_bins_rad, yaws, atol=1e-5)
    pts = conv.cloud_points(msg)
    sent = np.zeros(ll.shape, bool)
    sent[pts["k"], pts["row"], pts["col"]] = True
    assert np.count_nonzero(sent) == pts.size  # no cell twice
    inner = ll.reshape(-1).copy()
    inner[[0, -1]] = -np.inf
    # the two corners, and the cells within the threshold of the peak plus the best one below,
    # at most max_points in all
    within = np.count_nonzero(inner >= inner.max() - threshold)
    assert pts.size == 2 + min(within + 1, max_points - 2, ll.size - 2) <= max_points
    assert sent.reshape(-1)[[0, -1]].all()
    np.testing.assert_array_equal(back.log_likelihood[sent], ll[sent])  # sent cells are exact
    assert sent.reshape(-1)[np.argmax(ll)] and back.log_likelihood.max() == ll.max()  # the peak is always sent
    inner_sent = sent.reshape(-1) & np.isfinite(inner)
    if (~sent).any():
        # the cells sent are the largest ones, and a cell not sent never looks less likely than it was
        assert inner[~sent.reshape(-1)].max() <= inner[inner_sent].min()
        assert np.all(back.log_likelihood[~sent] >= ll[~sent])
    if np.count_nonzero(inner >= inner.max() - threshold) + 3 <= max_points:
        # not capped: every cell within the threshold of the peak (corners aside) is sent,
        # plus the best one below the threshold, whose value fills the cells not sent
        assert np.all(sent.reshape(-1)[inner >= inner.max() - threshold])
        below = np.sort(inner[inner < inner.max() - threshold])
        if (~sent).any():
            assert back.log_likelihood[~sent].max() == pytest.approx(below[-1])


def test_cloud_is_a_valid_rviz_pointcloud_in_map():
    vol = LikelihoodVolume(np.zeros((3, 4, 5), np.float32), 10.0, 20.0, 1.0, [0.0, 0.1, 0.2], 7)
    msg = conv.volume_to_cloud(vol, "map")
    names = [f.name for f in msg.fields]
    assert names[:5] == ["x", "y", "z", "yaw", "log_likelihood"]
    assert msg.header.frame_id == "map" and msg.height == 1
    assert msg.row_step == msg.point_step * msg.width == len(msg.data)
    pts = conv.cloud_points(msg)
    assert np.all(pts["z"] == 0)
    east, north = vol.cell_centres()
    np.testing.assert_allclose(pts["x"], east[pts["row"], pts["col"]], atol=1e-4)
    np.testing.assert_allclose(pts["y"], north[pts["row"], pts["col"]], atol=1e-4)


def test_bad_clouds_raise_input_errors():
    vol = LikelihoodVolume(np.zeros((2, 3, 3), np.float32), 0, 0, 1.0, [0.0, 1.0], 7)
    msg = conv.volume_to_cloud(vol)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(InputError, match="bytes"):
        conv.cloud_to_volume(msg)
    msg = conv.volume_to_cloud(vol)
    msg.fields = [f for f in msg.fields if f.name != "log_likelihood"]
    with pytest.raises(InputError, match="lacks field"):
        conv.cloud_to_volume(msg)
    msg = conv.volume_to_cloud(vol)
    raw = bytearray(msg.data)
    raw[16:20] = np.float32(np.nan).tobytes()
    msg.data = bytes(raw)
    with pytest.raises(InputError, match="NaN"):
        conv.cloud_to_volume(msg)


def test_pose_covariance_maps_x_y_yaw_into_the_6x6():
    cov = np.array([[1.0, 0.1, 0.2], [0.1, 2.0, 0.3], [0.2, 0.3, 0.5]])
    msg = conv.pose_with_covariance_msg(5, "map", 1.0, 2.0, 0.7, cov)
    e, n, yaw, back = conv.pose_msg_to_xy_yaw(msg)
    assert (e, n) == (1.0, 2.0) and yaw == pytest.approx(0.7)
    np.testing.assert_allclose(back, cov)
    c6 = np.asarray(msg.pose.covariance).reshape(6, 6)
    assert c6[2, 2] == c6[3, 3] == c6[4, 4] == 0.0


def test_pose_array_holds_each_particle_as_its_own_pose_message():
    rng = np.random.default_rng(3)
    e, n, yaw = rng.normal(0, 50, 40), rng.normal(0, 50, 40), rng.uniform(-math.pi, math.pi, 40)
    msg = conv.pose_array_msg(7, "map", e, n, yaw)
    assert msg.header.frame_id == "map" and len(msg.poses) == 40
    for pose, ei, ni, yi in zip(msg.poses, e, n, yaw):
        assert pose == conv.pose_msg(ei, ni, yi)
        assert conv.quaternion_to_yaw(pose.orientation.x, pose.orientation.y, pose.orientation.z,
                                      pose.orientation.w) == pytest.approx(yi)


def _fix(lat=49.01, lon=8.42, status=0, cov_type=2, var=4.0):
    m = NavSatFix()
    m.latitude, m.longitude, m.altitude = lat, lon, 115.0
    m.status.status = status
    m.position_covariance = [var, 0.0, 0.0, 0.0, var, 0.0, 0.0, 0.0, 4 * var]
    m.position_covariance_type = cov_type
    return m


def test_navsatfix_conversion_and_rejections():
    fix = conv.navsatfix_to_enu(_fix(), DATUM, 5.0)
    assert fix.sigma_m == pytest.approx(2.0) and fix.status_ok
    assert conv.navsatfix_to_enu(_fix(cov_type=0), DATUM, 5.0).sigma_m == 5.0
    with pytest.raises(InputError, match="NO_FIX"):
        conv.navsatfix_to_enu(_fix(status=-1), DATUM, 5.0)
    with pytest.raises(InputError, match="non-finite"):
        conv.navsatfix_to_enu(_fix(lat=float("nan")), DATUM, 5.0)
    with pytest.raises(InputError, match="outside WGS84"):
        conv.navsatfix_to_enu(_fix(lon=200.0), DATUM, 5.0)


def test_the_nodes_rclpy_time_is_the_one_stamp_split():
    from cvgl_ros.stamps import MAX_STAMP_NS, ns_to_sec_nanosec, stamp_to_ns

    for stamp in (0, 999_999_999, 1_700_000_000_123_456_789, MAX_STAMP_NS):
        time_msg = conv.to_stamp(stamp)
        assert (time_msg.sec, time_msg.nanosec) == ns_to_sec_nanosec(stamp) and stamp_to_ns(time_msg) == stamp
    for bad in (-5, MAX_STAMP_NS + 1, math.nan, 2.5):
        with pytest.raises(InputError, match="stamp"):
            conv.to_stamp(bad)
