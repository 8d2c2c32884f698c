"""scheduling: the scheduler service: five-field cron expressions and their next firing."""
