"""The downstream classifier: CIFAR ResNets, the public checkpoints, the backbone/classifier split."""

from trainables.classifier.downstream import DownstreamModel
from trainables.classifier.pretrained import load_checkpoint, locate_public_checkpoint
from trainables.classifier.resnet import CifarResNet

__all__ = ["CifarResNet", "DownstreamModel", "load_checkpoint", "locate_public_checkpoint"]
