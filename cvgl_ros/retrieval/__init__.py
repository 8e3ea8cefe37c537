"""Cross-view retrieval on the vehicle (torch-free, ONNX Runtime only), after "Cross-View Matching
for Vehicle Localization by Learning Geographically Local Representations" (seed 001).

- `encoders.DescriptorModel`: the exported ground and satellite encoders and their card.
- `index.DescriptorIndex`, `index.build_index`: satellite descriptors on a metric grid of the map
  frame (`cvgl retrieval index`), and the query of a circle: its cells and their scores e^{-d}.

Modules are imported on use; this package imports nothing.
"""
