"""What works on a network or a trained model, each a Python API the CLI renders: gradcheck,
bench, hessian, export, model_info (inspect), plot, tune, cv and init_config."""
