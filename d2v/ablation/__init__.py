"""The paper's ablations (top-K, target sublayer, target normalization) as seeded grid studies."""
