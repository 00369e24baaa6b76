"""Tools on top of trained models: scoring folders (FID, KID, PSNR, SSIM, LPIPS, identity), inverting images into
W+ codes, and `doctor` (versions, devices, op backends)."""
