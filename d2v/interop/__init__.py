"""Two-way interop with HF transformers' Data2Vec models: one module per modality holds the
explicit name mapping and the config fields carried across (`d2v export` / `d2v import`)."""
