"""Request and response models. Create, update and public models are separate, so a hash or
a secret can never leak through a response by accident."""
