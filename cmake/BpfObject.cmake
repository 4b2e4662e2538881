# bpf_object(NAME SOURCE)
#
# Compiles bpf/NAME.bpf.c with clang -target bpf (CO-RE, BTF via -g), generates
# NAME.skel.h with `bpftool gen skeleton`, and exposes an INTERFACE target
# NAME_skel that carries the generated header and libbpf. A program just links it.
# (The shape of libbpf-bootstrap's FindBpfObject.cmake, written for this tree.)

find_program(BPF_CLANG NAMES clang clang-16 clang-15 clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)

# vmlinux.h: from the running kernel's BTF when it has one, else the checked-in
# x86_64 copy. CO-RE relocations make either work on other kernels.
set(GPUOFFLOAD_VMLINUX_DIR ${CMAKE_BINARY_DIR}/vmlinux)
if(EXISTS /sys/kernel/btf/vmlinux AND NOT GPUOFFLOAD_CHECKED_IN_VMLINUX)
  execute_process(
    COMMAND ${BPFTOOL} btf dump file /sys/kernel/btf/vmlinux format c
    OUTPUT_FILE ${GPUOFFLOAD_VMLINUX_DIR}.tmp.h
    RESULT_VARIABLE _vmlinux_rc ERROR_QUIET)
endif()
if(DEFINED _vmlinux_rc AND _vmlinux_rc EQUAL 0)
  file(MAKE_DIRECTORY ${GPUOFFLOAD_VMLINUX_DIR})
  file(RENAME ${GPUOFFLOAD_VMLINUX_DIR}.tmp.h ${GPUOFFLOAD_VMLINUX_DIR}/vmlinux.h)
  message(STATUS "vmlinux.h: generated from /sys/kernel/btf/vmlinux")
else()
  set(GPUOFFLOAD_VMLINUX_DIR ${CMAKE_SOURCE_DIR}/bpf/vmlinux/x86)
  message(STATUS "vmlinux.h: checked-in copy bpf/vmlinux/x86/vmlinux.h (no kernel BTF here)")
endif()

set(BPF_ARCH_DEFINE -D__TARGET_ARCH_x86)

function(bpf_object name source)
  set(obj ${CMAKE_CURRENT_BINARY_DIR}/${name}.bpf.o)
  set(skel ${CMAKE_CURRENT_BINARY_DIR}/${name}.skel.h)
  get_filename_component(src_abs ${source} ABSOLUTE)
  get_filename_component(src_dir ${src_abs} DIRECTORY)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPF_CLANG} -g -O2 -Wall -Werror -target bpf ${BPF_ARCH_DEFINE}
            -I${GPUOFFLOAD_VMLINUX_DIR} -I${src_dir} -I${CMAKE_SOURCE_DIR}
            -c ${src_abs} -o ${obj}
    DEPENDS ${src_abs} ${ARGN}
    IMPLICIT_DEPENDS C ${src_abs}
    COMMENT "BPF ${name}.bpf.c"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}
    DEPENDS ${obj}
    COMMENT "skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${CMAKE_CURRENT_BINARY_DIR} ${src_dir})
  target_link_libraries(${name}_skel INTERFACE gpuoffload::libbpf)
endfunction()
