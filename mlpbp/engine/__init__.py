"""The maths: activations, layers, losses, the network and its passes, optimizers."""
