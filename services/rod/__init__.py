"""ROD (Register Onderwijsdeelnemers): enrolments, funding decisions and feedback pushed to schools."""
