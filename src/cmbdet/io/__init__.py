"""Files in and out: NIfTI volumes with every bad input named (:mod:`.nifti`), the dataset
layout of DESIGN.md (:mod:`.dataset`, lesion tables in :mod:`.lesions`), a batch's inputs from
a dataset, BIDS or a manifest (:mod:`.inputs`), model folders (:mod:`.model_folder`), result
tables (:mod:`.results`) and writing into folders users name (:mod:`.writing`)."""
