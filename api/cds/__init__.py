"""CDS Hooks 2.0: the EHR asks for cards (patient-view, order-sign, encounter-discharge), sends feedback."""
