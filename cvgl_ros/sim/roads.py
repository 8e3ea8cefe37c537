"""The road network of a synthetic world: a planar graph of intersections and curved streets,
and random drives along it in the right-hand lane.

A `RoadGraph` holds nodes (intersections and dead ends, ENU metres) and edges, each edge a
centreline polyline from node `a` to node `b` with its cross-section (lanes per direction,
lane width, parking lanes, sidewalks) and the arc positions of its zebra crossings.

`RoadGraph.generate` builds a jittered, rotated lattice (block sizes by style), removes edges
while keeping the graph connected, and bends edges into quadratic/cubic Bezier curves.
`RoadGraph.route` walks the graph (straight on preferred; no hairpin turns into a street at an
acute angle; U-turns only where nothing else is left, e.g. at a dead end),
offsets each traversed edge to the centre of its right-most lane, rounds the corners at
intersections with Bezier arcs and resamples the result every 1 m.

`route(..., turn_rich=True)` is the drive that stresses a localizer (the fleet benchmark's).
At an intersection of three or more streets the car turns round with probability
UTURN_PROBABILITY (a U-turn where the road allows it; at a dead end it must). Otherwise it
takes a street that leaves at least 30 deg off straight on, weighted 1 + TURN_WEIGHT sin^2
of the turn angle; it may cross MAX_STRAIGHT_JUNCTIONS (0) junctions straight on in a row,
and where straight on is all that is left it turns round. Urban and suburban blocks
(85-170 m) then give a turn every 10-25 s at up to 15 m/s; on a small rural network the car
shuttles between its dead ends. The default walk is unchanged (same seed, same route).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cvgl_ros.errors import InputError

ROUTE_STEP_M = 1.0
# turn_rich routes (see the module docstring)
TURN_WEIGHT = 6.0
UTURN_PROBABILITY = 0.08
MAX_STRAIGHT_JUNCTIONS = 0
STRAIGHT_COS = math.cos(math.radians(30.0))  # a junction crossed within 30 deg of straight on


# -- polyline helpers -------------------------------------------------------------------

def arc_lengths(points: np.ndarray) -> np.ndarray:
    """Cumulative arc length (m) at each vertex of an (N,2) polyline, starting at 0."""
    seg = np.hypot(*np.diff(points, axis=0).T) if len(points) > 1 else np.zeros(0)
    return np.concatenate([[0.0], np.cumsum(seg)])


def resample(points: np.ndarray, step_m: float) -> np.ndarray:
    """Resample a polyline at (almost) uniform arc-length spacing, keeping both ends."""
    s = arc_lengths(points)
    if s[-1] <= 0:
        return points[:1].copy()
    n = max(2, int(math.ceil(s[-1] / step_m)) + 1)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=1)


def point_at(points: np.ndarray, s_query, s: np.ndarray | None = None):
    """Positions (..,2) and unit tangents (..,2) at arc lengths `s_query` along a polyline."""
    s = arc_lengths(points) if s is None else s
    q = np.clip(np.asarray(s_query, dtype=float), 0.0, s[-1])
    pos = np.stack([np.interp(q, s, points[:, 0]), np.interp(q, s, points[:, 1])], axis=-1)
    k = np.clip(np.searchsorted(s, q, side="right") - 1, 0, len(points) - 2)
    tangent = points[k + 1] - points[k]
    tangent = tangent / np.maximum(np.linalg.norm(tangent, axis=-1, keepdims=True), 1e-12)
    return pos, tangent


def offset_polyline(points: np.ndarray, offset_m: float) -> np.ndarray:
    """Offset a polyline to its right by `offset_m` (negative: left), mitred at vertices."""
    d = np.diff(points, axis=0)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    right = np.stack([d[:, 1], -d[:, 0]], axis=1)
    normals = np.empty_like(points)
    normals[0], normals[-1] = right[0], right[-1]
    if len(points) > 2:
        avg = right[:-1] + right[1:]
        avg /= np.maximum(np.linalg.norm(avg, axis=1, keepdims=True), 1e-12)
        cos_half = np.maximum(np.sum(avg * right[1:], axis=1), 0.5)
        normals[1:-1] = avg / cos_half[:, None]
    return points + offset_m * normals


def bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def cubic_bezier(p0, p1, p2, p3, n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def trim(points: np.ndarray, start_m: float, end_m: float) -> np.ndarray:
    """The part of a polyline between arc length `start_m` and `length - end_m`."""
    s = arc_lengths(points)
    a, b = start_m, s[-1] - end_m
    if b <= a:
        mid, _ = point_at(points, 0.5 * (a + b), s)
        return np.stack([mid, mid])
    inner = (s > a) & (s < b)
    pa, _ = point_at(points, a, s)
    pb, _ = point_at(points, b, s)
    return np.concatenate([pa[None], points[inner], pb[None]])


# -- the graph ---------------------------------------------------------------------------

@dataclass
class RoadEdge:
    """A street between nodes `a` and `b`; `points_en` runs from a to b (ENU metres)."""

    a: int
    b: int
    points_en: np.ndarray
    kind: str                      # "arterial", "street", "country"
    lanes_per_direction: int
    lane_width_m: float
    parking_lane_m: float          # each side, 0 when none
    sidewalk_m: float              # each side, 0 when none (country roads get a gravel shoulder)
    crossings_s_m: list[float] = field(default_factory=list)  # zebra crossings, arc length from a

    @property
    def half_width_m(self) -> float:
        """Half the carriageway width: lanes plus the parking lane, kerb to centreline."""
        return self.lanes_per_direction * self.lane_width_m + self.parking_lane_m

    @property
    def lane_offset_m(self) -> float:
        """Right offset of the right-most driving lane's centre from the centreline."""
        return (self.lanes_per_direction - 0.5) * self.lane_width_m

    @property
    def length_m(self) -> float:
        return float(arc_lengths(self.points_en)[-1])

    def to_dict(self) -> dict:
        return {
            "a": self.a, "b": self.b, "kind": self.kind, "lanes_per_direction": self.lanes_per_direction,
            "lane_width_m": self.lane_width_m, "parking_lane_m": self.parking_lane_m,
            "sidewalk_m": self.sidewalk_m, "crossings_s_m": [round(float(v), 3) for v in self.crossings_s_m],
            "points_en": np.round(self.points_en, 3).tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RoadEdge":
        pts = np.asarray(d["points_en"], dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
            raise InputError("road edge needs at least two (east, north) points")
        return cls(int(d["a"]), int(d["b"]), pts, str(d["kind"]), int(d["lanes_per_direction"]),
                   float(d["lane_width_m"]), float(d["parking_lane_m"]), float(d["sidewalk_m"]),
                   [float(v) for v in d.get("crossings_s_m", [])])


@dataclass
class RoadStyle:
    """Block sizes and cross-sections of a road network style."""

    spacing_m: tuple[float, float]       # lattice spacing along the two grid axes (min, max)
    jitter: float                        # node jitter as a fraction of the spacing
    removal: float                       # fraction of lattice edges removed (connectivity kept)
    min_degree: int                      # removal keeps every node at least this degree
    bend: float                          # Bezier bend amplitude as a fraction of the edge length
    arterial_every: int                  # every k-th lattice line is an arterial (0: none)
    lane_width_m: float
    street_lanes: int
    parking_lane_m: float
    sidewalk_m: float
    arterial_sidewalk_m: float
    kind: str
    crossing_prob: float                 # zebra crossing at an intersection approach


ROAD_STYLES = {
    "urban": RoadStyle((85.0, 125.0), 0.10, 0.08, 2, 0.0, 3, 3.25, 1, 2.2, 3.5, 4.5, "street", 0.6),
    "suburban": RoadStyle((120.0, 170.0), 0.16, 0.22, 1, 0.18, 0, 3.0, 1, 0.0, 2.0, 2.0, "street", 0.25),
    "rural": RoadStyle((260.0, 380.0), 0.18, 0.40, 1, 0.30, 0, 3.0, 1, 0.0, 0.0, 0.0, "country", 0.0),
}


class RoadGraph:
    """Nodes (N,2) in ENU metres and edges; see the module docstring."""

    def __init__(self, nodes_en: np.ndarray, edges: list[RoadEdge], world_half_m: float = math.inf):
        self.nodes_en = np.asarray(nodes_en, dtype=float).reshape(-1, 2)
        self.edges = edges
        self.world_half_m = float(world_half_m)
        self.incident: list[list[int]] = [[] for _ in range(len(self.nodes_en))]
        for k, e in enumerate(edges):
            if not (0 <= e.a < len(self.nodes_en) and 0 <= e.b < len(self.nodes_en)):
                raise InputError(f"road edge {k} refers to a missing node")
            self.incident[e.a].append(k)
            self.incident[e.b].append(k)

    # -- serialization
    def to_dict(self) -> dict:
        return {"world_half_m": self.world_half_m, "nodes_en": np.round(self.nodes_en, 3).tolist(),
                "edges": [e.to_dict() for e in self.edges]}

    @classmethod
    def from_dict(cls, d: dict) -> "RoadGraph":
        return cls(np.asarray(d["nodes_en"], dtype=float), [RoadEdge.from_dict(e) for e in d["edges"]],
                   float(d.get("world_half_m", math.inf)))

    # -- queries
    def degree(self, node: int) -> int:
        return len(self.incident[node])

    def is_dead_end(self, node: int) -> bool:
        """A street that ends inside the world (a cul-de-sac), not one cut by the world's edge."""
        return self.degree(node) == 1 and bool(np.all(np.abs(self.nodes_en[node]) < self.world_half_m))

    def node_clearance_m(self, node: int) -> float:
        """Distance from a node to where its streets are clear of the crossing carriageways."""
        widths = [self.edges[k].half_width_m + self.edges[k].sidewalk_m for k in self.incident[node]]
        if len(widths) <= 1:
            return 0.0
        return max(widths) + 2.0

    def total_length_m(self) -> float:
        return float(sum(e.length_m for e in self.edges))

    # -- generation
    @classmethod
    def generate(cls, rng: np.random.Generator, style: str, size_m: float) -> "RoadGraph":
        """A street network over the whole square of `size_m` (edges run on past its edges).

        One lattice node sits exactly at the centre and its streets are never removed, so
        every world has streets through its middle to drive on.
        """
        st = ROAD_STYLES[style]
        half = size_m / 2.0
        theta = rng.uniform(0.0, math.pi / 2.0)
        sx, sy = (rng.uniform(*st.spacing_m) for _ in range(2))
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        keep_half = half + 0.75 * max(sx, sy)
        reach = int(math.ceil(keep_half * math.sqrt(2.0) / min(sx, sy))) + 1
        index: dict[tuple[int, int], int] = {}
        nodes = []
        for i in range(-reach, reach + 1):
            for j in range(-reach, reach + 1):
                local = np.array([i * sx, j * sy])
                jitter = rng.uniform(-st.jitter, st.jitter, 2) * np.array([sx, sy])
                if (i, j) != (0, 0):
                    local += jitter
                p = rot @ local
                if np.all(np.abs(p) <= keep_half):
                    index[(i, j)] = len(nodes)
                    nodes.append(p)
        nodes = np.array(nodes)
        pairs, arterial, protected = [], [], []
        for (i, j), k in index.items():
            for di, dj in ((1, 0), (0, 1)):
                k2 = index.get((i + di, j + dj))
                if k2 is None:
                    continue
                mid = 0.5 * (nodes[k] + nodes[k2])
                if np.any(np.abs(mid) > half + 0.25 * max(sx, sy)) and not (
                        np.all(np.abs(nodes[k]) <= half) or np.all(np.abs(nodes[k2]) <= half)):
                    continue  # wholly outside the world
                pairs.append((k, k2))
                line = j if di == 1 else i
                arterial.append(st.arterial_every > 0 and line % st.arterial_every == 0)
                protected.append((i, j) == (0, 0) or (i + di, j + dj) == (0, 0))
        pairs, arterial = _thin_edges(rng, len(nodes), pairs, arterial, protected, st)
        nodes, pairs, arterial = _largest_component(nodes, pairs, arterial)
        edges = [_make_edge(rng, nodes, a, b, art, st) for (a, b), art in zip(pairs, arterial)]
        graph = cls(nodes, edges, half)
        graph._place_crossings(rng, st)
        return graph

    def clipped(self, half_m: float, min_piece_m: float = 15.0) -> "RoadGraph":
        """The drivable part inside the square |east|, |north| <= half_m: edges cut where they
        leave it (new dead-end nodes there), largest connected piece only."""
        nodes = [p for p in self.nodes_en]
        node_map: dict[int, int] = {}
        new_nodes: list[np.ndarray] = []
        edges: list[RoadEdge] = []

        def node_id(k: int) -> int:
            if k not in node_map:
                node_map[k] = len(new_nodes)
                new_nodes.append(nodes[k])
            return node_map[k]

        for e in self.edges:
            pts = e.points_en
            inside = np.all(np.abs(pts) <= half_m, axis=1)
            if not inside.any():
                continue
            s = arc_lengths(pts)
            # runs of consecutive inside points
            edges_of_run = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(int), [0]])))
            for r0, r1 in zip(edges_of_run[::2], edges_of_run[1::2]):
                if r1 - r0 < 2 or s[r1 - 1] - s[r0] < min_piece_m:
                    continue
                a = node_id(e.a) if r0 == 0 else None
                b = node_id(e.b) if r1 == len(pts) else None
                if a is None:
                    a = len(new_nodes)
                    new_nodes.append(pts[r0])
                if b is None:
                    b = len(new_nodes)
                    new_nodes.append(pts[r1 - 1])
                crossings = [c - s[r0] for c in e.crossings_s_m if s[r0] <= c <= s[r1 - 1]]
                edges.append(RoadEdge(a, b, pts[r0:r1].copy(), e.kind, e.lanes_per_direction, e.lane_width_m,
                                      e.parking_lane_m, e.sidewalk_m, crossings))
        if not edges:
            return RoadGraph(np.zeros((0, 2)), [])
        # keep the largest connected piece
        pairs = [(e.a, e.b) for e in edges]
        arr = np.array(pairs)
        n = len(new_nodes)
        m = coo_matrix((np.ones(len(arr)), (arr[:, 0], arr[:, 1])), shape=(n, n))
        _, labels = connected_components(m, directed=False)
        lengths = np.zeros(labels.max() + 1)
        for e in edges:
            lengths[labels[e.a]] += e.length_m
        best = int(np.argmax(lengths))
        keep_nodes = np.flatnonzero(labels == best)
        remap = -np.ones(n, dtype=int)
        remap[keep_nodes] = np.arange(len(keep_nodes))
        kept = []
        for e in edges:
            if labels[e.a] == best:
                e.a, e.b = int(remap[e.a]), int(remap[e.b])
                kept.append(e)
        return RoadGraph(np.array(new_nodes)[keep_nodes], kept)

    def _place_crossings(self, rng: np.random.Generator, st: RoadStyle) -> None:
        for e in self.edges:
            length = e.length_m
            for node, at_start in ((e.a, True), (e.b, False)):
                if self.degree(node) >= 3 and rng.random() < st.crossing_prob:
                    d = self.node_clearance_m(node) + 1.5
                    if d < 0.4 * length:
                        e.crossings_s_m.append(d if at_start else length - d)
            if st.crossing_prob > 0 and length > 110.0 and rng.random() < 0.3:
                e.crossings_s_m.append(length * rng.uniform(0.4, 0.6))
            e.crossings_s_m.sort()

    # -- drives
    def route(self, rng: np.random.Generator, length_m: float, turn_rich: bool = False) -> "Route":
        """A random drive of `length_m` metres in the right-hand lane (see module docstring)."""
        if not (length_m > 0 and math.isfinite(length_m)):
            raise InputError(f"route length must be a positive number of metres, got {length_m}")
        if not self.edges:
            raise InputError("this world has no road far enough from its edges to drive on")
        lengths = np.array([e.length_m for e in self.edges])
        k = int(rng.choice(len(self.edges), p=lengths / lengths.sum()))
        forward = bool(rng.random() < 0.5)
        start_offset = rng.uniform(0.0, 0.8) * lengths[k]
        steps = [(k, forward)]
        while True:
            if turn_rich:
                self._extend_turn_rich(rng, steps, 4)
            else:
                self._extend(rng, steps, 4)
            route = self._build_route(steps, start_offset, length_m)
            if route is not None:
                return route

    def _extend(self, rng: np.random.Generator, steps: list, n_more: int) -> None:
        for _ in range(n_more):
            k_prev, fwd_prev = steps[-1]
            e_prev = self.edges[k_prev]
            node = e_prev.b if fwd_prev else e_prev.a
            d_in = _end_direction(e_prev, fwd_prev)
            # no hairpins: streets meeting at an acute angle are not turned into from each other
            options = [j for j in self.incident[node] if j != k_prev and
                       float(np.dot(d_in, _start_direction(self.edges[j], self.edges[j].a == node))) > -0.5]
            if not options:
                steps.append((k_prev, not fwd_prev))  # dead end: turn around
                continue
            weights = []
            for j in options:
                d_out = _start_direction(self.edges[j], self.edges[j].a == node)
                weights.append(1.0 + 2.0 * max(float(np.dot(d_in, d_out)), 0.0) ** 4)
            weights = np.array(weights) / np.sum(weights)
            j = options[int(rng.choice(len(options), p=weights))]
            steps.append((j, self.edges[j].a == node))

    def _extend_turn_rich(self, rng: np.random.Generator, steps: list, n_more: int) -> None:
        """`_extend` for turn-rich routes: turns preferred, U-turns at intersections, at most
        MAX_STRAIGHT_JUNCTIONS junctions crossed straight on in a row (module docstring)."""
        for _ in range(n_more):
            k_prev, fwd_prev = steps[-1]
            e_prev = self.edges[k_prev]
            node = e_prev.b if fwd_prev else e_prev.a
            d_in = _end_direction(e_prev, fwd_prev)
            options, cosines = [], []
            for j in self.incident[node]:
                if j == k_prev:
                    continue
                c = float(np.dot(d_in, _start_direction(self.edges[j], self.edges[j].a == node)))
                if c > -0.5:  # no hairpins
                    options.append(j)
                    cosines.append(c)
            if not options or (self.degree(node) >= 3 and rng.random() < UTURN_PROBABILITY):
                steps.append((k_prev, not fwd_prev))  # turn round: at a dead end, or a U-turn
                continue
            cosines = np.array(cosines)
            turning = cosines < STRAIGHT_COS
            weights = np.where(turning, 1.0 + TURN_WEIGHT * (1.0 - cosines**2), 1.0)
            if self._straight_run(steps) >= MAX_STRAIGHT_JUNCTIONS:
                if not turning.any():
                    steps.append((k_prev, not fwd_prev))  # only straight on is left: turn round
                    continue
                weights = np.where(turning, weights, 0.0)
            weights = weights / weights.sum()
            j = options[int(rng.choice(len(options), p=weights))]
            steps.append((j, self.edges[j].a == node))

    def _straight_run(self, steps: list) -> int:
        """How many of the last junctions of `steps` were crossed within 30 deg of straight on."""
        run = 0
        for (k0, f0), (k1, f1) in zip(reversed(steps[:-1]), reversed(steps[1:])):
            if k0 == k1:
                break  # a U-turn is a turn
            c = float(np.dot(_end_direction(self.edges[k0], f0), _start_direction(self.edges[k1], f1)))
            if c < STRAIGHT_COS:
                break
            run += 1
        return run

    def _build_route(self, steps, start_offset: float, length_m: float) -> "Route | None":
        lanes = []
        for k, fwd in steps:
            e = self.edges[k]
            pts = e.points_en if fwd else e.points_en[::-1]
            lanes.append(offset_polyline(pts, e.lane_offset_m))
        pieces: list[np.ndarray] = []
        stops_before: list[bool] = []     # per junction: a stop line before it
        crossings: list[tuple[int, float]] = []  # (piece index, arc length on that edge's lane)
        cuts = []
        for i, (k, fwd) in enumerate(steps):
            e = self.edges[k]
            node_end = e.b if fwd else e.a
            cut_end = self._corner_cut(node_end) if i + 1 < len(steps) else 0.0
            node_start = e.a if fwd else e.b
            cut_start = self._corner_cut(node_start) if i > 0 else 0.0
            cuts.append((cut_start, cut_end))
            length = e.length_m
            for s in e.crossings_s_m:
                s_dir = s if fwd else length - s
                crossings.append((i, s_dir - cut_start))
        for i, (k, fwd) in enumerate(steps):
            cut_start, cut_end = cuts[i]
            lane = lanes[i]
            # leave room for the corner arcs; short edges keep at least a point
            lane_len = arc_lengths(lane)[-1]
            scale = min(1.0, 0.45 * lane_len / max(cut_start + cut_end, 1e-9)) if cut_start + cut_end > 0 else 1.0
            body = trim(lane, cut_start * scale, cut_end * scale)
            if i > 0:
                prev_body = pieces[-1]
                k_prev, fwd_prev = steps[i - 1]
                node = self.edges[k].a if fwd else self.edges[k].b
                arc = _junction_arc(prev_body, body, self.nodes_en[node], k_prev == k)
                pieces.append(arc)
                stops_before.append(self.degree(node) >= 3)
            pieces.append(body)
        # concatenate, noting the arc length where each junction arc begins
        points = [pieces[0]]
        starts = [0.0]
        s_total = arc_lengths(pieces[0])[-1]
        junction_s = []
        for p in pieces[1:]:
            starts.append(s_total)
            gap = float(np.hypot(*(p[0] - points[-1][-1])))
            s_total += gap
            points.append(p)
            s_total += arc_lengths(p)[-1]
        # piece index 2*i is edge body i, 2*i-1 the arc before it
        for j in range(1, len(steps)):
            if stops_before[j - 1]:
                junction_s.append(starts[2 * j - 1] - 2.0)
        for i, s_on in crossings:
            if 0.0 <= s_on:
                junction_s.append(starts[2 * i] + s_on - 3.0)
        full = np.concatenate(points)
        if arc_lengths(full)[-1] < start_offset + length_m + 1.0:
            return None
        keep = np.concatenate([[True], np.hypot(*np.diff(full, axis=0).T) > 1e-6])
        full = full[keep]
        s_full = arc_lengths(full)
        t = start_offset + np.linspace(0.0, length_m, max(2, int(round(length_m / ROUTE_STEP_M)) + 1))
        pts = np.stack([np.interp(t, s_full, full[:, 0]), np.interp(t, s_full, full[:, 1])], axis=1)
        stop_s = np.array(sorted(s - start_offset for s in junction_s if start_offset < s < start_offset + length_m))
        return Route(pts, stop_s)

    def _corner_cut(self, node: int) -> float:
        if self.degree(node) == 1:
            return 0.0
        return max(6.0, 0.9 * self.node_clearance_m(node))


def _start_direction(edge: RoadEdge, forward: bool) -> np.ndarray:
    p = edge.points_en if forward else edge.points_en[::-1]
    d = p[min(3, len(p) - 1)] - p[0]
    return d / max(np.linalg.norm(d), 1e-12)


def _end_direction(edge: RoadEdge, forward: bool) -> np.ndarray:
    p = edge.points_en if forward else edge.points_en[::-1]
    d = p[-1] - p[max(0, len(p) - 4)]
    return d / max(np.linalg.norm(d), 1e-12)


def _junction_arc(prev_body: np.ndarray, body: np.ndarray, node: np.ndarray, u_turn: bool) -> np.ndarray:
    """A smooth arc from the end of `prev_body` to the start of `body` through a junction."""
    p0, p2 = prev_body[-1], body[0]
    d_in = prev_body[-1] - prev_body[max(0, len(prev_body) - 3)]
    d_out = body[min(2, len(body) - 1)] - body[0]
    d_in = d_in / max(np.linalg.norm(d_in), 1e-12)
    d_out = d_out / max(np.linalg.norm(d_out), 1e-12)
    if u_turn or np.dot(d_in, d_out) < -0.9:
        # turn around at a dead end: a teardrop loop into the turning circle beyond the node
        right = np.array([d_in[1], -d_in[0]])
        c1 = p0 + 10.0 * d_in + 5.0 * right
        c2 = p2 + 10.0 * d_in - 5.0 * right
        return cubic_bezier(p0, c1, c2, p2, 40)[1:-1]
    # the corner where the incoming lane line (p0 + t0 d_in) meets the outgoing one (p2 - t1 d_out)
    a = np.stack([d_in, d_out], axis=1)
    n = max(3, int(np.linalg.norm(p2 - p0) / 0.5))
    if abs(np.linalg.det(a)) > 1e-3:
        t = np.linalg.solve(a, p2 - p0)
        if t[0] > 0 and t[1] > 0:
            # a quadratic arc tangent to both lanes, its control point at that corner
            return bezier(p0, p0 + t[0] * d_in, p2, n)[1:-1]
    # straight on, or a turn sharper than the lines allow: a cubic arc, still tangent to both lanes
    k = 0.5 * max(float(np.linalg.norm(p2 - p0)), 2.0)
    return cubic_bezier(p0, p0 + k * d_in, p2 - k * d_out, p2, n + 4)[1:-1]


def _thin_edges(rng, n_nodes, pairs, arterial, protected, st: RoadStyle):
    pairs = list(pairs)
    arterial = list(arterial)
    n_remove = int(round(st.removal * len(pairs)))
    order = rng.permutation(len(pairs))
    alive = np.ones(len(pairs), dtype=bool)
    degree = np.zeros(n_nodes, dtype=int)
    for a, b in pairs:
        degree[a] += 1
        degree[b] += 1
    removed = 0
    for k in order:
        if removed >= n_remove:
            break
        if arterial[k] or protected[k]:
            continue
        a, b = pairs[k]
        if degree[a] <= st.min_degree or degree[b] <= st.min_degree:
            continue
        alive[k] = False
        if _n_components(n_nodes, [p for p, al in zip(pairs, alive) if al], degree, (a, b)) > 1:
            alive[k] = True
            continue
        degree[a] -= 1
        degree[b] -= 1
        removed += 1
    return [p for p, al in zip(pairs, alive) if al], [x for x, al in zip(arterial, alive) if al]


def _n_components(n_nodes, pairs, degree, removed_pair) -> int:
    if not pairs:
        return n_nodes
    a = np.array(pairs)
    m = coo_matrix((np.ones(len(a)), (a[:, 0], a[:, 1])), shape=(n_nodes, n_nodes))
    _, labels = connected_components(m, directed=False)
    return 1 if labels[removed_pair[0]] == labels[removed_pair[1]] else 2


def _largest_component(nodes, pairs, arterial):
    n = len(nodes)
    a = np.array(pairs).reshape(-1, 2)
    m = coo_matrix((np.ones(len(a)), (a[:, 0], a[:, 1])), shape=(n, n))
    _, labels = connected_components(m, directed=False)
    used = np.zeros(n, dtype=bool)
    used[a.reshape(-1)] = True
    counts = np.bincount(labels[used], minlength=labels.max() + 1)
    best = int(np.argmax(counts))
    keep = used & (labels == best)
    remap = -np.ones(n, dtype=int)
    remap[keep] = np.arange(int(keep.sum()))
    new_pairs, new_art = [], []
    for (p, q), art in zip(pairs, arterial):
        if keep[p] and keep[q]:
            new_pairs.append((int(remap[p]), int(remap[q])))
            new_art.append(art)
    return nodes[keep], new_pairs, new_art


def _make_edge(rng, nodes, a, b, arterial: bool, st: RoadStyle) -> RoadEdge:
    pa, pb = nodes[a], nodes[b]
    chord = pb - pa
    length = float(np.linalg.norm(chord))
    normal = np.array([-chord[1], chord[0]]) / max(length, 1e-9)
    n = max(2, int(length / 2.0) + 1)
    if st.bend > 0 and rng.random() < 0.8:
        if rng.random() < 0.5:
            ctrl = 0.5 * (pa + pb) + normal * length * st.bend * rng.uniform(-1.0, 1.0)
            pts = bezier(pa, ctrl, pb, n)
        else:
            c1 = pa + chord / 3.0 + normal * length * st.bend * rng.uniform(-1.0, 1.0)
            c2 = pa + 2.0 * chord / 3.0 + normal * length * st.bend * rng.uniform(-1.0, 1.0)
            pts = cubic_bezier(pa, c1, c2, pb, n)
    else:
        t = np.linspace(0.0, 1.0, n)[:, None]
        pts = pa + t * chord
    pts = resample(pts, 2.0)
    if arterial:
        return RoadEdge(a, b, pts, "arterial", 2, st.lane_width_m, 0.0, st.arterial_sidewalk_m)
    parking = st.parking_lane_m if rng.random() < 0.8 else 0.0
    return RoadEdge(a, b, pts, st.kind, st.street_lanes, st.lane_width_m, parking, st.sidewalk_m)


@dataclass
class Route:
    """A drive along the road graph in the right-hand lane.

    points_en: (N,2) float64 ENU metres, evenly spaced about every ROUTE_STEP_M of arc length.
    stop_s:    arc lengths (m from the start) of stop lines before intersections and of zebra
               crossings, where a car may have to stop.
    """

    points_en: np.ndarray
    stop_s: np.ndarray

    @property
    def s_m(self) -> np.ndarray:
        return arc_lengths(self.points_en)

    @property
    def length_m(self) -> float:
        return float(self.s_m[-1])

    def yaw_enu_rad(self) -> np.ndarray:
        """Heading at each point (REP-103: counter-clockwise from east), from central differences."""
        d = np.gradient(self.points_en, axis=0)
        return np.arctan2(d[:, 1], d[:, 0])

    def curvature_per_m(self) -> np.ndarray:
        """Signed curvature (1/m, left turns positive) at each point."""
        yaw = np.unwrap(self.yaw_enu_rad())
        return np.gradient(yaw, self.s_m)

    def pose_at(self, s_query):
        """(east, north, yaw_enu_rad) at arc lengths `s_query` (m)."""
        pos, tangent = point_at(self.points_en, s_query, self.s_m)
        return pos[..., 0], pos[..., 1], np.arctan2(tangent[..., 1], tangent[..., 0])
