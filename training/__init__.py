"""Training data and training: persona pools, generated preference conversations, the Hub dataset built from
them, then SFT and a preference stage (DPO, IPO or KTO) with TRL."""
