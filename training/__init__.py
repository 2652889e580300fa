"""Training: SFT then a preference stage (DPO, IPO or KTO) with TRL on the ALOE dataset."""
