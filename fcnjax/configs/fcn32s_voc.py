"""FCN-32s, VGG16, PASCAL VOC 2012 + SBD, reference settings; init from a converted ImageNet VGG16 (vgg16.npz, see README).

    python -m fcnjax.commands.train --config=fcn32s_voc --workdir=runs/fcn32s_voc \
        --config.data.manual_dir=/data/VOCdevkit/VOC2012 --config.data.sbd_dir=/data/SBD
"""
from fcnjax.configs import paper_voc_config


def get_config():
  return paper_voc_config("32s")
