"""Deployment, without Lightning: reading checkpoints safely, exporting bundles (ONNX, torch.export, safetensors,
translator.json), loading them for inference, translating folders, and importing published reference weights."""
