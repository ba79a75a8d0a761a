"""Train-time code for the bundled lead model: synthetic CRM data, an additive (EBM-style) model,
calibration, ONNX export and the model card. Serving never imports this package.
"""
