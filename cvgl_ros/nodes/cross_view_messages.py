"""What the cross-view node publishes for one camera frame, as messages: its likelihood cloud
and pose, the coarse stage's grid scores, its debug overlay, and its status (processed,
skipped and why, dropped)."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import Image

from cvgl_ros.imaging import encode_rgb
from cvgl_ros.localization.frame_localizer import FILTER_INPUTS_KEY, FrameEstimate
from cvgl_ros.nodes import conversions as conv


def estimate_msgs(estimate: FrameEstimate, stamp_ns: int, frame_id: str, threshold_nats: float, max_points: int):
    """(PointCloud2 of the likelihood, PoseWithCovarianceStamped of the pose) of a processed frame."""
    result = estimate.result
    return (conv.volume_to_cloud(result.volume, frame_id, threshold_nats, max_points),
            conv.pose_with_covariance_msg(stamp_ns, frame_id, result.east_m, result.north_m, result.yaw_enu_rad,
                                          estimate.covariance))


def frame_msgs(estimate: FrameEstimate, stamp_ns: int, frame_id: str, p: dict, patch_mpp: float,
               camera_height_m: float) -> list:
    """(output, message) of a processed frame, output naming the node's publisher: likelihood and
    pose (unless the coarse stage alone searched it), retrieval (when the coarse stage ran),
    overlay (when due). `p`: the node's parameters."""
    out = []
    if estimate.result is not None:
        cloud, pose = estimate_msgs(estimate, stamp_ns, frame_id, p["likelihood_threshold_nats"],
                                    p["likelihood_max_points"])
        out = [("likelihood", cloud), ("pose", pose)]
    if estimate.retrieval is not None:
        from cvgl_ros.nodes.retrieval_messages import scores_to_cloud

        out.append(("retrieval", scores_to_cloud(estimate.retrieval, frame_id)))
    if estimate.overlay and estimate.result is not None:
        out.append(("overlay", overlay_msg(estimate, stamp_ns, frame_id, patch_mpp, camera_height_m)))
    return out


def overlay_msg(estimate: FrameEstimate, stamp_ns: int, frame_id: str, patch_mpp: float,
                camera_height_m: float) -> Image:
    """The camera's bird's-eye view over the satellite patch at the estimate (`nodes/overlay.py`), rgb8."""
    from cvgl_ros.nodes.overlay import bev_overlay

    result, prior = estimate.result, estimate.prior
    picture = bev_overlay(estimate.patch.rgb, patch_mpp, prior.east_m, prior.north_m, estimate.rgb, estimate.k,
                          camera_height_m, result.east_m, result.north_m, result.yaw_enu_rad)
    out = Image()
    out.header.stamp = conv.to_stamp(stamp_ns)
    out.header.frame_id = frame_id
    out.height, out.width, out.step, out.data = encode_rgb(picture, "rgb8")
    out.encoding = "rgb8"
    return out


def frame_status_msg(stamp_ns: int, frame_id: str, node_name: str, level: int, text: str,
                     timings: dict, filter_inputs: int = 0) -> DiagnosticArray:
    """One frame's status, stamped with the frame, its stage timings (ms, keys `*_ms`) as values,
    and `filter_inputs` (when > 0): how many of its outputs the filter answers with a pose at
    its stamp. `level`: 0 OK, 1 WARN, 2 ERROR (the message's field is a byte: an int would be
    garbled)."""
    values = [KeyValue(key=k, value=f"{v:.3f}") for k, v in timings.items()]
    if filter_inputs > 0:
        values.append(KeyValue(key=FILTER_INPUTS_KEY, value=str(int(filter_inputs))))
    status = DiagnosticStatus(level=bytes([level]), name=f"cvgl_ros: {node_name} frame", message=text, hardware_id="cvgl_ros",
                              values=values)
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = conv.to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    return msg
