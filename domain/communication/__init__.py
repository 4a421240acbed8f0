"""Outbound communication: each clinic's provider chains, devices, the delivery pipeline, the
delivery log and the suppression list. What to send, and when, is the notifications' business;
this context makes sending real, safe and observable."""
