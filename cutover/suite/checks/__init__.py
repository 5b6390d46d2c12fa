"""The smoke matrix's automated checks, written from the plan and never from the cutover's own code."""
