"""Data on disk: rosbag2 recordings (`bag`), training pairs (`pairs`), importers of real data sets."""
