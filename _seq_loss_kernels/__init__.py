"""Accelerated backends of seq_loss_util, private to it: a compiled C kernel for CPU
tensors (``cpu``), Triton kernels for CUDA tensors (``triton``) and the torch.library
operators that route to them (``ops``). seq_loss_util runs without this package (its
pure-PyTorch backend), for example when the module is copied alone into a folder.
"""
