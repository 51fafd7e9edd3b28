"""FCN-8s, VGG16, PASCAL VOC 2012 + SBD, reference settings; init from runs/fcn16s_voc.

    python -m fcnjax.commands.train --config=fcn8s_voc --workdir=runs/fcn8s_voc \
        --config.data.manual_dir=/data/VOCdevkit/VOC2012 --config.data.sbd_dir=/data/SBD
"""
from fcnjax.configs import paper_voc_config


def get_config():
  return paper_voc_config("8s")
