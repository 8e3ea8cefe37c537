"""The particle-filter node's parameters (`PARAMS`): its own, and the particle filter's as
`filter.<name>`, a description and a range for every field of `ParticleFilterConfig` (a test
checks that none is missing); `filter_config` makes the filter's configuration of them."""
from __future__ import annotations

from dataclasses import fields

from cvgl_ros.filter.particle_filter import ParticleFilterConfig
from cvgl_ros.nodes.parameters import CAMERA_FRAME_PARAM, DATUM_PARAM, MOUNTING_SOURCE_PARAM, Param

# Descriptions and ranges of the filter's parameters (ParticleFilterConfig), as `filter.<name>`.
FILTER_PARAMS = {
    "num_particles": ("particles M (seed 001: 2000)", 10, 1_000_000),
    "camera_x_m": ("the camera's position in base_link, forward (REP-103 x), m: the likelihood is the camera's",
                   -50.0, 50.0),
    "camera_y_m": ("the camera's position in base_link, left (y), m", -50.0, 50.0),
    "antenna_x_m": ("the GNSS antenna's lever arm in base_link, forward (x), m", -50.0, 50.0),
    "antenna_y_m": ("the GNSS antenna's lever arm in base_link, left (y), m", -50.0, 50.0),
    "init_speed_max_mps": ("initial speeds ~ U[0, this] m/s", 0.0, 100.0),
    "accel_noise_mps2": ("acceleration noise density, m/s^2 per sqrt(s)", 0.0, 50.0),
    "yaw_rate_noise_radps": ("yaw-rate noise density, rad/s per sqrt(s)", 0.0, 10.0),
    "position_noise_mps": ("position diffusion, m per sqrt(s)", 0.0, 10.0),
    "max_speed_mps": ("speeds are clipped to this, m/s", 0.0, 200.0),
    "gyro_noise_radps": ("with an IMU: yaw-rate noise density floor, rad/s per sqrt(s)", 0.0, 10.0),
    "gyro_bias_init_radps": ("with an IMU: 1-sigma of the initial gyro bias, rad/s", 0.0, 1.0),
    "gyro_bias_walk_radps": ("with an IMU: gyro bias random walk, rad/s per sqrt(s)", 0.0, 1.0),
    "speed_scale_sigma": ("with wheel odometry: 1-sigma speed scale error (fraction)", 0.0, 1.0),
    "speed_noise_mps": ("with wheel odometry: speed noise floor, m/s", 0.0, 10.0),
    "motion_timeout_s": ("IMU / odometry samples farther apart than this are a gap (constant-velocity "
                         "model meanwhile), s", 0.001, 10.0),
    "use_cross_view": ("fuse cross-view likelihoods (false: GNSS-only baseline)", None, None),
    "cross_view_outlier_prob": ("weight of the uniform component of the cross-view factor", 1e-6, 0.999),
    "cross_view_timeout_s": ("a cross-view update this recent holds the estimate against GNSS, s", 0.0, 60.0),
    "evidence_window_s": ("cross-view evidence for the estimate is averaged over this, s", 0.0, 60.0),
    "gate_sigmas": ("particles beyond this many GNSS sigmas are discarded (seed 001: 3)", 0.1, 100.0),
    "gate_min_weight": ("less particle weight than this in the circle counts as none", 0.0, 1.0),
    "gate_suspicious_weight": ("while cross-view holds the estimate, a fix with less particle weight than this "
                               "inside its 3-sigma circle is suspicious (not fused)", 0.0, 1.0),
    "gate_suspicious_min_m": ("a fix closer than this to the estimate is never suspicious, m", 0.0, 1000.0),
    "outlier_sigmas": ("r_outlier = this * sigma_gps + v dt (seed 001: 3)", 0.1, 100.0),
    "jump_test_max_gap_s": ("no jump test against the previous raw fix across a longer gap between "
                            "valid fixes, s", 0.0, 60.0),
    "outlier_warmup_s": ("no outlier test this long after (re)initialization, s", 0.0, 600.0),
    "relock_after_s": ("re-seed around GNSS after rejecting fixes this long, s", 0.0, 3600.0),
    "relock_after_confirmed_s": ("... this long while cross-view confirms the estimate and its yaw, s", 0.0, 3600.0),
    "relock_memory_s": ("after a timed re-lock the protection level holds the gap it closed this long, s",
                        0.0, 3600.0),
    "integrity_window_s": ("integrity monitor: consistent fixes disagreeing with the estimate this long "
                           "re-lock it at once, s", 0.1, 600.0),
    "integrity_min_fixes": ("integrity monitor: fixes needed in the window", 3, 10_000),
    "integrity_consistency_sigmas": ("integrity monitor: fit residual below this * sigma_gps counts as "
                                     "consistent", 0.1, 100.0),
    "integrity_min_speed_mps": ("integrity monitor: yaw is tested against the course over ground above "
                                "this speed, m/s", 0.0, 100.0),
    "integrity_yaw_tolerance_deg": ("integrity monitor: yaw farther than this from the course over ground "
                                    "means the estimate is wrong, deg", 1.0, 180.0),
    "integrity_min_evidence": ("integrity monitor: mean cross-view log-evidence below this means cross-view "
                               "no longer confirms the estimate", -100.0, 100.0),
    "integrity_contradict_evidence": ("integrity monitor: mean cross-view log-evidence below this means cross-view "
                                      "contradicts the estimate, even after a GNSS fault", -100.0, 100.0),
    "relock_yaw_sigma_deg": ("yaw spread around the course over ground after an integrity re-lock, deg",
                             0.0, 180.0),
    "default_gnss_sigma_m": ("1-sigma of fixes that report no covariance, m", 0.01, 1000.0),
    "min_gnss_sigma_m": ("reported GNSS sigmas are floored to this, m", 0.0, 100.0),
    "resample_ess_fraction": ("resample when ESS < this * M", 0.01, 1.0),
    "history_s": ("late measurements within this are applied at their stamp, s", 0.0, 10.0),
    "backwards_reset_s": ("a GNSS stamp this far in the past resets the filter, s", 0.0, 3600.0),
    "covariance_scale": ("c_P: the published covariance is this times the particles' spread (calibrated by the "
                         "fleet benchmark's NEES)", 0.1, 100.0),
    "covariance_floor_m": ("the published position 1-sigma is at least this, m", 0.0, 100.0),
    "covariance_floor_yaw_deg": ("the published yaw 1-sigma is at least this, deg", 0.0, 180.0),
    "unverified_sigma_m": ("added (in quadrature) to the position 1-sigma while the estimate rests on GNSS alone: "
                           "after a (re)seed, until cross-view first confirms it; 0: off, m", 0.0, 1000.0),
    "protection_level_sigmas": ("k_PL: Gaussian multiplier of the protection level", 0.1, 100.0),
    "protection_level_scale": ("c_PL: overall scale of the protection level", 0.01, 100.0),
}


# Fixed for a node's life: the particle array's size and the filter's mode.
STRUCTURAL = ("num_particles", "use_cross_view")


def filter_params() -> list[Param]:
    defaults = ParticleFilterConfig()
    out = []
    for f in fields(ParticleFilterConfig):
        desc, lo, hi = FILTER_PARAMS[f.name]  # every field is described (a test checks it)
        out.append(Param(f"filter.{f.name}", getattr(defaults, f.name), desc, lo, hi,
                         live=f.name not in STRUCTURAL))
    return out


def filter_config(p: dict) -> ParticleFilterConfig:
    """The `filter.*` parameters of `p` (name -> value) as the filter's configuration."""
    return ParticleFilterConfig(**{f.name: p[f"filter.{f.name}"] for f in fields(ParticleFilterConfig)})


PARAMS = [
    DATUM_PARAM,
    Param("seed", 0, "random seed of the particle filter", 0, 2**31 - 1),
    Param("map_frame", "map", "frame of the published poses (ENU at the datum)"),
    Param("base_link_frame", "base_link", "the vehicle's frame: child of /cvgl/odometry and of the TF"),
    Param("odom_frame", "odom", "odometry's frame: with odom -> base_link on /tf, the TF is map -> odom"),
    Param("publish_tf", True, "publish map -> odom (odom -> base_link on /tf) or else map -> base_link on /tf"),
    Param("odom_tf_max_gap_s", 0.5, "odom -> base_link farther than this from a pose's stamp counts as none "
          "(the TF is then map -> base_link), s", 0.0, 10.0),
    Param("gnss_frame", "gnss", "frame_id of the fused /cvgl/fix"),
    MOUNTING_SOURCE_PARAM,
    CAMERA_FRAME_PARAM,
    Param("gnss_antenna_frame", "", "the GNSS antenna's TF frame on /tf_static (filter.antenna_* from it); empty: "
          "the frame_id of the NavSatFix, 'gnss' until a fix arrives"),
    Param("max_published_particles", 300, "particles sent on /cvgl/particles (a subsample)", 0, 100_000),
    Param("path_min_step_m", 0.5, "a pose is added to /cvgl/path after moving this far, m", 0.0, 100.0),
    Param("path_max_poses", 2000, "the oldest poses of /cvgl/path are dropped beyond this", 1, 1_000_000),
    Param("path_period_s", 1.0, "/cvgl/path is published at most this often (message time), s", 0.0, 3600.0),
    Param("particles_period_s", 0.2, "/cvgl/particles is published at most this often (message time), s: a "
          "300-particle PoseArray costs the node ~5 ms", 0.0, 3600.0),
    Param("diagnostics_period_s", 1.0, "period of /diagnostics, s (wall clock)", 0.05, 60.0),
    *filter_params(),
]
