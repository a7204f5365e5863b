"""Helpers the extensions share (not extensions themselves): the file a syscall
acts on, umask and auxv (common), struct stat/statx (statbuf), struct sockaddr
(sockaddr), struct utsname (utsname)."""
