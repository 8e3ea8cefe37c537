"""The nodes' ROS parameters are their settings classes' fields: the descriptor of each (type,
range, description, read-only) comes from the field's declaration, and a value is checked by
the field's own rules. No node is started: rcl_interfaces' messages only."""
import math

import pytest

from cvgl_ros.config import specs
from cvgl_ros.errors import InputError
from cvgl_ros.filter.particle_filter import ParticleFilterConfig
from cvgl_ros.nodes import cross_view_parameters, filter_parameters

ALL_PARAMS = cross_view_parameters.PARAMS + filter_parameters.PARAMS


def test_every_filter_field_is_a_parameter_with_the_fields_default_description_and_range():
    declared = {p.name: p for p in filter_parameters.PARAMS}
    defaults = ParticleFilterConfig()
    for spec in specs(ParticleFilterConfig):
        param = declared[f"filter.{spec.name}"]
        assert param.default == getattr(defaults, spec.name) and param.description == spec.description
        assert (param.min, param.max) == (spec.low, spec.high), spec.name
        assert param.live == (spec.name not in filter_parameters.STRUCTURAL), spec.name


@pytest.mark.parametrize("param", ALL_PARAMS, ids=lambda p: p.name)
def test_a_parameters_descriptor_range_is_its_fields_range(param):
    d = param.descriptor()
    spec = next(s for s in specs(param.settings) if s.name == param.field)
    assert d.read_only == (not param.live) and d.description.startswith(spec.description)
    ranges = list(d.floating_point_range) + list(d.integer_range)
    if spec.annotation in (int, float) and spec.low is not None and spec.high is not None:
        (r,) = ranges
        assert (r.from_value, r.to_value) == (spec.low, spec.high), param.name
        assert (r.step == 1) if spec.annotation is int else (r.step == 0.0 and not list(d.integer_range))
    else:
        assert not ranges, param.name
    if spec.low is not None:
        assert spec.low <= param.default <= spec.high, param.name


def test_a_parameter_value_is_checked_by_its_fields_rules():
    by_name = {p.name: p for p in ALL_PARAMS}
    assert by_name["intra_op_threads"].check(2.0) == 2 and by_name["tile_cache_mb"].check(300) == 300.0
    for name, value, words in (("intra_op_threads", 2.5, "integer"), ("intra_op_threads", 0, "greater"),
                               ("filter.num_particles", 3, "greater"), ("filter.gate_sigmas", math.nan, "finite"),
                               ("image_transport", "rgb", "raw, compressed"), ("publish_tf", 1, "true or false"),
                               ("filter.min_gnss_sigma_m", 0.0, "greater than 0")):
        with pytest.raises(InputError) as info:
            by_name[name].check(value)
        assert f"parameter {name}" in str(info.value) and words in str(info.value), str(info.value)
    assert by_name["datum"].check([48.0, 11.0]) == [48.0, 11.0]  # any type: parse_datum checks it


def test_the_node_settings_refuse_unknown_names():
    with pytest.raises(InputError, match="unknown parameter.*particle_count"):
        filter_parameters.FilterNodeParameters(particle_count=10)
    with pytest.raises(InputError, match="unknown parameter.*tile_cache"):
        cross_view_parameters.CrossViewNodeParameters(tile_cache=10.0)


def test_the_mounting_ranges_are_the_parameters_ranges():
    """The core (localization/mounting.py) cannot import the node's parameter declarations: its
    copies of their ranges must not drift from them (a camera refused from /tf_static that a
    parameter would take). Here, not in the core's tests: the nodes need rclpy."""
    from cvgl_ros.config import specs
    from cvgl_ros.filter.particle_filter import ParticleFilterConfig
    from cvgl_ros.localization import mounting
    from cvgl_ros.nodes.cross_view_parameters import CrossViewNodeParameters

    node = {s.name: s for s in specs(CrossViewNodeParameters)}
    for name in ("camera_roll_deg", "camera_pitch_deg"):
        assert (node[name].low, node[name].high) == (-mounting.MAX_TILT_DEG, mounting.MAX_TILT_DEG)
    assert (node["camera_height_m"].low, node["camera_height_m"].high) == mounting.HEIGHT_RANGE_M
    arms = [s for s in specs(ParticleFilterConfig) if s.name in mounting.CAMERA_FIELDS + mounting.ANTENNA_FIELDS]
    assert len(arms) == 4 and all((s.low, s.high) == (-mounting.MAX_OFFSET_M, mounting.MAX_OFFSET_M) for s in arms)
