"""SMART App Launch: the worklist and the patient view opened from inside the EHR."""
