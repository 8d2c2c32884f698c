"""telephony: the sms service: GSM-7 / UCS-2 segmentation and signed delivery receipts."""
