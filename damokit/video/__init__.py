"""Video models: MotionRGBD (decoupled/recoupled RGB-D motion recognition with CAPF fusion)."""
