"""TTT-MIM without adaptation, with and without noise-level normalisation, on held-out training images.

Same images and noises as ``ttt_calibrate.py`` (the first 4 held-out Train400 images,
central 256x256). Prints the mean PSNR per noise. Usage: ``python benchmarks/ttt_normalise.py``.
"""
import numpy as np, torch, sys
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parent))
from ttt_calibrate import NOISES, DATA
from skimage import io
from skimage.metrics import peak_signal_noise_ratio as psnr
from napari_masked_denoise.methods import get_method
from napari_masked_denoise.masks import Coords
from napari_masked_denoise.training import gray01, VAL_EVERY_NTH
torch.set_num_threads(2)
files=sorted(DATA.glob("*.png")); val=[f for i,f in enumerate(files) if i%VAL_EVERY_NTH==VAL_EVERY_NTH-1][:4]
for k,(noise,f) in enumerate(NOISES.items()):
    r={True:[],False:[]}
    for j,p in enumerate(val):
        img=gray01(io.imread(p)); h,w=img.shape; c=img[(h-256)//2:(h+256)//2,(w-256)//2:(w+256)//2]
        y=f(c,np.random.default_rng(100*k+j)).astype(np.float32)[None]
        for nn_ in (True,False):
            m=get_method("ttt-mim")(preset="no-adapt",mode="per-tile",device=torch.device("cpu"),normalise_noise=nn_)
            r[nn_].append(psnr(c,np.clip(m.process(y,Coords([0]))[0],0,1),data_range=1))
    print(f"{noise:22s} normalised {np.mean(r[True]):.2f}  plain {np.mean(r[False]):.2f}")
