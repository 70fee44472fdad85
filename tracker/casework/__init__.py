"""What a case manager records on a case: notes, appointments, documents, households."""
