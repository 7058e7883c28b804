"""QA tasks on SQuAD, QuALITY and TOEFL-QA documents."""
