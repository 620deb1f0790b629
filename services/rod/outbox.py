"""The transactional feedback outbox: a feedback is written in the deciding transaction, as the wire message.

Only the streams read it (services.rod.service.follow_feedback). The outbox
stores the registry.v1.Feedback message as written, so a stream sends
exactly what was decided; the row's columns (school, enrolment, cause) are
what readers filter on.
"""

from __future__ import annotations

from sqlmodel import Session

from services.common.database import lock_log_for_append
from services.rod import codec, store
from services.rod.rules import FeedbackEntry

FEEDBACK_LOG = store.FEEDBACK_LOG


def append(session: Session, entry: FeedbackEntry) -> int:
    """Writes one feedback in this transaction, after every earlier writer's commit; returns its cursor."""
    lock_log_for_append(session, FEEDBACK_LOG)
    return store.append_feedback(
        session,
        sandbox_id=entry.sandbox_id,
        institution_code=entry.institution_code,
        enrolment_id=entry.enrolment_id,
        cause_id=entry.cause_id,
        trigger=entry.trigger,
        payload=codec.feedback_payload(entry),
    )
