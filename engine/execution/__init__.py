"""The pieces of execution that go beyond a fixed topological order: a prompt that grows while it runs
(node expansion), a schedule that changes as lazy inputs are requested, blockers and list calls."""
