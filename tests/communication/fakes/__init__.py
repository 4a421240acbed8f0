"""Local servers that speak each provider's wire protocol and check what the real one checks
(auth headers, signatures, required fields). Tests point carewire at them through settings;
nothing of ours is patched."""
