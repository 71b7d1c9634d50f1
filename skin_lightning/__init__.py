"""Train, evaluate and explain a dermoscopy skin-lesion classifier."""
