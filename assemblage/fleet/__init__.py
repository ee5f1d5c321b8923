"""Workers on AWS: user-data for new instances, sizing Auto Scaling groups, S3 lifecycle, cost per binary.

- :mod:`assemblage.fleet.userdata`: cloud-init (Linux) and PowerShell (Windows MSVC) for instances;
- :mod:`assemblage.fleet.reconcile`: queue depths and running builds -> desired capacity per group,
  scale-in protection for instances with a build in progress;
- :mod:`assemblage.fleet.aws`: boto3 clients with errors translated, S3 lifecycle rules for logs;
- :mod:`assemblage.fleet.cost`: the cost per 1,000 binaries of a finished run.
"""
