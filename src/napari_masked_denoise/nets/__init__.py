"""Networks: one file each, plain ``torch.nn.Module`` classes."""
