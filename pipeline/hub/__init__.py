"""The Hugging Face Hub: ``hf://`` inputs pinned to one commit, downloads of prepared folders, publishing."""
