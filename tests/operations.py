"""Every operation the OpenAPI serves: the suites that must cover each route compare against this
one list, so a new route fails them until it is covered."""

from __future__ import annotations

OPENAPI_OPERATIONS = {
    ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/register"),
    ("GET", "/api/v1/users/me"), ("GET", "/api/v1/users/me/invitations"),
    *(("POST", f"/api/v1/users/me/invitations/{{invitation_id}}/{action}")
      for action in ("accept", "decline")),
    ("GET", "/api/v1/clinics"), ("POST", "/api/v1/clinics"),
    ("GET", "/api/v1/clinics/{clinic_id}"), ("PATCH", "/api/v1/clinics/{clinic_id}"),
    ("GET", "/api/v1/clinics/{clinic_id}/locations"),
    ("POST", "/api/v1/clinics/{clinic_id}/locations"),
    ("GET", "/api/v1/clinics/{clinic_id}/members"),
    ("POST", "/api/v1/clinics/{clinic_id}/members"),
    ("PATCH", "/api/v1/clinics/{clinic_id}/members/{user_id}"),
    ("DELETE", "/api/v1/clinics/{clinic_id}/members/{user_id}"),
    ("GET", "/api/v1/clinics/{clinic_id}/invitations"),
    ("POST", "/api/v1/clinics/{clinic_id}/invitations/{invitation_id}/revoke"),
    ("GET", "/api/v1/clinics/{clinic_id}/events"),
    ("PUT", "/api/v1/clinics/{clinic_id}/doctors/{doctor_id}/schedule"),
    ("GET", "/api/v1/clinics/{clinic_id}/doctors/{doctor_id}/schedule"),
    ("POST", "/api/v1/clinics/{clinic_id}/doctors/{doctor_id}/time-off"),
    ("POST", "/api/v1/clinics/{clinic_id}/holidays"),
    ("GET", "/api/v1/clinics/{clinic_id}/doctors/{doctor_id}/availability"),
    ("POST", "/api/v1/appointments"), ("POST", "/api/v1/appointments/series"),
    ("GET", "/api/v1/appointments"), ("GET", "/api/v1/appointments/{appointment_id}"),
    *(("POST", f"/api/v1/appointments/{{appointment_id}}/{action}")
      for action in ("confirm", "check-in", "start", "complete", "no-show", "cancel",
                     "reschedule", "follow-up")),
    ("GET", "/api/v1/patients/{patient_id}/history"),
    ("GET", "/api/v1/clinics/{clinic_id}/queues"), ("GET", "/api/v1/queues/{queue_id}"),
    *(("POST", f"/api/v1/queues/{{queue_id}}/{action}")
      for action in ("call-next", "pause", "resume", "board-token")),
    *(("POST", f"/api/v1/queue-entries/{{entry_id}}/{action}")
      for action in ("priority", "transfer", "skip", "requeue", "start", "complete")),
    ("GET", "/api/v1/appointments/{appointment_id}/queue-position"),
    ("GET", "/api/v1/appointments/{appointment_id}/check-in-code"),
    ("GET", "/api/v1/clinics/{clinic_id}/locations/{location_id}/check-in-code"),
    ("GET", "/api/v1/boards/{queue_id}/state"),
    ("GET", "/api/v1/clinics/{clinic_id}/communication/config"),
    ("PUT", "/api/v1/clinics/{clinic_id}/communication/config"),
    ("POST", "/api/v1/clinics/{clinic_id}/communication/test/{channel}"),
    ("GET", "/api/v1/clinics/{clinic_id}/communication/health"),
    ("GET", "/api/v1/users/me/devices"), ("POST", "/api/v1/users/me/devices"),
    ("DELETE", "/api/v1/users/me/devices/{device_id}"),
    ("GET", "/api/v1/clinics/{clinic_id}/communication/suppressions"),
    ("POST", "/api/v1/clinics/{clinic_id}/communication/suppressions"),
    ("DELETE", "/api/v1/clinics/{clinic_id}/communication/suppressions/{channel}/{address}"),
    ("GET", "/api/v1/clinics/{clinic_id}/communication/messages"),
    ("GET", "/api/v1/clinics/{clinic_id}/communication/messages/{message_id}"),
    ("GET", "/api/v1/users/me/messages"),
    ("GET", "/api/v1/users/me/notification-preferences"),
    ("PUT", "/api/v1/users/me/notification-preferences"),
    ("GET", "/api/v1/users/me/notifications"),
    ("POST", "/api/v1/users/me/notifications/read-all"),
    ("POST", "/api/v1/users/me/notifications/{notification_id}/read"),
    *((method, "/api/v1/clinics/{clinic_id}/communication/templates/{kind}/{channel}/{locale}")
      for method in ("GET", "PUT", "DELETE")),
    ("POST", "/api/v1/clinics/{clinic_id}/communication/templates/{kind}/{channel}/{locale}/preview"),
    ("GET", "/api/v1/unsubscribe/{token}"), ("POST", "/api/v1/unsubscribe/{token}"),
    ("POST", "/api/v1/webhooks/communication/ses"),
    ("POST", "/api/v1/webhooks/communication/zeptomail"),
    ("POST", "/api/v1/webhooks/communication/whatsapp"),
    ("GET", "/api/v1/webhooks/communication/whatsapp"),
    ("GET", "/health/live"), ("GET", "/health/ready"),
    # --- billing: invoices ---
    ("GET", "/api/v1/billing/invoices"), ("POST", "/api/v1/billing/invoices"),
    ("GET", "/api/v1/billing/invoices/{invoice_id}"),
    ("GET", "/api/v1/billing/invoices/{invoice_id}/pdf"),
    ("POST", "/api/v1/billing/invoices/{invoice_id}/finalize"),
    ("POST", "/api/v1/billing/invoices/{invoice_id}/void"),
    # --- billing: payments ---
    ("POST", "/api/v1/billing/payments"), ("GET", "/api/v1/billing/payments"),
    ("GET", "/api/v1/billing/payments/{payment_id}"),
    ("PUT", "/api/v1/clinics/{clinic_id}/billing/credentials/{provider}"),
    ("GET", "/api/v1/clinics/{clinic_id}/billing/credentials/{provider}"),
    ("POST", "/api/v1/webhooks/payments/{provider}/{clinic_id}"),
    # --- billing: refunds ---
    ("POST", "/api/v1/billing/payments/{payment_id}/refunds"),
    ("GET", "/api/v1/billing/payments/{payment_id}/refunds"),
    ("GET", "/api/v1/billing/refunds"), ("GET", "/api/v1/billing/refunds/{refund_id}"),
}

# --- billing: plans ---
OPENAPI_OPERATIONS |= {
    ("GET", "/api/v1/billing/plans"), ("POST", "/api/v1/billing/plans"),
    ("GET", "/api/v1/billing/plans/{plan_id}"), ("PATCH", "/api/v1/billing/plans/{plan_id}"),
    ("GET", "/api/v1/billing/subscriptions"), ("POST", "/api/v1/billing/subscriptions"),
    ("GET", "/api/v1/billing/subscriptions/{subscription_id}"),
    ("POST", "/api/v1/billing/subscriptions/{subscription_id}/cancel"),
}

# --- video: sessions ---
OPENAPI_OPERATIONS |= {
    ("POST", "/api/v1/video/sessions"), ("GET", "/api/v1/video/sessions/{session_id}"),
    ("GET", "/api/v1/appointments/{appointment_id}/video-sessions"),
    *(("POST", f"/api/v1/video/sessions/{{session_id}}/{action}")
      for action in ("token", "admit", "end")),
}

# --- video: providers ---
OPENAPI_OPERATIONS |= {
    ("PUT", "/api/v1/clinics/{clinic_id}/video/credentials/{provider}"),
    ("GET", "/api/v1/clinics/{clinic_id}/video/credentials/{provider}"),
    ("GET", "/api/v1/clinics/{clinic_id}/video/health"),
}


# --- video: webhooks and recording ---
OPENAPI_OPERATIONS |= {
    ("POST", "/api/v1/webhooks/video/openvidu"),
    ("POST", "/api/v1/video/sessions/{session_id}/consent"),
    ("POST", "/api/v1/video/sessions/{session_id}/recordings"),
    ("POST", "/api/v1/video/recordings/{recording_id}/stop"),
    ("GET", "/api/v1/video/recordings"),
    ("POST", "/api/v1/video/recordings/{recording_id}/link"),
}
